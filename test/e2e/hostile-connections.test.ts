import "./hostile/connections.js";
