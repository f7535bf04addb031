// POST /txbyblockandindex (or /ws/txbyblockandindex): eth_getTransactionByBlockNumberAndIndex.
//   k6 run k6/http/txbyblockandindex.js                      # stage profile (PROFILE=local|remote|smoke)
//   k6 run -e VIA=ws k6/http/txbyblockandindex.js            # the /ws/... variant (upstream over websocket)
//   k6 run -e MODE=rate -e RATE=200 k6/http/txbyblockandindex.js
import { routeScript } from '../lib/common.js';

const script = routeScript('txbyblockandindex');

export const options = script.options;
export const handleSummary = script.handleSummary;
export default script.run;
