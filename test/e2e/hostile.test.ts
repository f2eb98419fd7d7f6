import "./hostile/publish.js";
import "./hostile/operator.js";
import "./hostile/duplicates.js";
import "./hostile/registry.js";
import "./hostile/feedback.js";
// hostile/connections.js runs from hostile-connections.test.ts, alone (its bounds are timings).
