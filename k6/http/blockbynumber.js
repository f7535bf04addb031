// POST /blockbynumber (or /ws/blockbynumber): eth_getBlockByNumber with a {block, txdetails} body.
//   k6 run k6/http/blockbynumber.js                      # stage profile (PROFILE=local|remote|smoke)
//   k6 run -e VIA=ws k6/http/blockbynumber.js            # the /ws/... variant (upstream over websocket)
//   k6 run -e MODE=rate -e RATE=200 k6/http/blockbynumber.js
import { routeScript } from '../lib/common.js';

const script = routeScript('blockbynumber');

export const options = script.options;
export const handleSummary = script.handleSummary;
export default script.run;
