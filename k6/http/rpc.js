// POST / : JSON-RPC passthrough with a mix of read methods.
//   k6 run k6/http/rpc.js                      # stage profile (PROFILE=local|remote|smoke)
//   k6 run -e MODE=rate -e RATE=200 k6/http/rpc.js
import { routeScript } from '../lib/common.js';

const script = routeScript('rpc');

export const options = script.options;
export const handleSummary = script.handleSummary;
export default script.run;
