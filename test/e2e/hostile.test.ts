import "./hostile/publish.js";
