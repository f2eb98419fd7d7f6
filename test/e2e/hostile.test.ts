import "./hostile/operator.js";
