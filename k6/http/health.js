// GET /health (or /ws/health): no upstream call, the gateway's own overhead.
//   k6 run k6/http/health.js                      # stage profile (PROFILE=local|remote|smoke)
//   k6 run -e VIA=ws k6/http/health.js            # the /ws/... variant (upstream over websocket)
//   k6 run -e MODE=rate -e RATE=200 k6/http/health.js
import { routeScript } from '../lib/common.js';

const script = routeScript('health');

export const options = script.options;
export const handleSummary = script.handleSummary;
export default script.run;
