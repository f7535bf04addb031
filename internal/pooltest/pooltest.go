// Package pooltest puts fasthttp's body buffer pools in the state a busy gateway
// reaches, for the allocation guards: a guard that passes only on pools still
// uncalibrated passes in tests and allocates in production.
package pooltest

import "github.com/valyala/fasthttp"

// calibrateCalls is bytebufferpool's calibrateCallsThreshold: past this many puts of
// one size class, a pool calibrates.
const calibrateCalls = 42000

// CalibrateBodyPools calibrates fasthttp's request and response body pools on empty
// bodies, as a gateway's pool is once its answers leave by SwapBody: each pool then
// keeps no buffer over 64 bytes, and a body handed to one is dropped and allocated
// again on the next Get. Twice: the first calibration counts what earlier tests put,
// the second only this.
func CalibrateBodyPools() {
	for range 2 * (calibrateCalls + 1) {
		resp := fasthttp.AcquireResponse()
		resp.AppendBody(nil) // takes a buffer from the pool
		fasthttp.ReleaseResponse(resp)
		req := fasthttp.AcquireRequest()
		req.AppendBody(nil)
		fasthttp.ReleaseRequest(req)
	}
}
