import "./hostile/publish.js";
import "./hostile/connections.js";
