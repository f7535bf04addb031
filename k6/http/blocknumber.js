// GET /blocknumber (or /ws/blocknumber): eth_blockNumber, cached by the gateway.
//   k6 run k6/http/blocknumber.js                      # stage profile (PROFILE=local|remote|smoke)
//   k6 run -e VIA=ws k6/http/blocknumber.js            # the /ws/... variant (upstream over websocket)
//   k6 run -e MODE=rate -e RATE=200 k6/http/blocknumber.js
import { routeScript } from '../lib/common.js';

const script = routeScript('blocknumber');

export const options = script.options;
export const handleSummary = script.handleSummary;
export default script.run;
