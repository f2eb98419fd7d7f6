import "./hostile/publish.js";
import "./hostile/connections.js";
import "./hostile/operator.js";
import "./hostile/duplicates.js";
import "./hostile/registry.js";
