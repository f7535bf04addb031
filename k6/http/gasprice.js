// GET /gasprice (or /ws/gasprice): eth_gasPrice.
//   k6 run k6/http/gasprice.js                      # stage profile (PROFILE=local|remote|smoke)
//   k6 run -e VIA=ws k6/http/gasprice.js            # the /ws/... variant (upstream over websocket)
//   k6 run -e MODE=rate -e RATE=200 k6/http/gasprice.js
import { routeScript } from '../lib/common.js';

const script = routeScript('gasprice');

export const options = script.options;
export const handleSummary = script.handleSummary;
export default script.run;
