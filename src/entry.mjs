// The Worker's JavaScript entry (`build/index.js`, written by `cargo xtask build`): the wasm
// build's handlers behind a plain module export.
//
// worker-build's own entry (renamed `build/glue.js`) exports a WorkerEntrypoint class behind a
// Proxy that constructs an instance and wraps each method in another Proxy on every request, so
// that it can replace the instance after a Rust panic. The recovery itself lives in
// wasm-bindgen's glue — a panic schedules a reset that the next call into wasm performs — and
// this Worker keeps no state in its entrypoint instance, so calling the handlers directly keeps
// the recovery and drops the per-request construction (docs/performance.md). `handleFetch`
// (src/lib.rs) answers synchronously when a request needs no I/O, else with a Promise.
//
// A panic or exception would reach the runtime, which answers its own HTML error page without
// the Worker's data point: `answerFailure` records one (5xx) so the release gate counts it
// (docs/releases.md) and answers the API's JSON 500. After a panic that call is the one that
// resets the wasm instance; if even it fails, the error goes on to the runtime as before.
import Entrypoint from "./glue.js";

const { handleFetch, answerFailure, scheduled } = Entrypoint.prototype;

export default {
  fetch(request, env, ctx) {
    const started = Date.now();
    try {
      const answer = handleFetch(request, env, ctx);
      return answer instanceof Promise ? answer.catch((error) => failed(error, env, started)) : answer;
    } catch (error) {
      return failed(error, env, started);
    }
  },
  scheduled(event, env, ctx) {
    return scheduled.call({ env, ctx }, event);
  },
};

function failed(error, env, started) {
  console.error("request failed:", error);
  try {
    return answerFailure(env, started);
  } catch {
    throw error;
  }
}
