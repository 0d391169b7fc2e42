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
import Entrypoint from "./glue.js";

const { handleFetch, scheduled } = Entrypoint.prototype;

export default {
  fetch(request, env, ctx) {
    return handleFetch(request, env, ctx);
  },
  scheduled(event, env, ctx) {
    return scheduled.call({ env, ctx }, event);
  },
};
