// The front Worker's JavaScript entry (`front/build/index.js`, written by `cargo xtask
// build-front`): the wasm build's handler behind a plain module export.
//
// As for the app Worker (src/entry.mjs, docs/performance.md): worker-build's own entry (renamed
// `glue.js`) builds a WorkerEntrypoint instance and Proxies around it and each method on every
// request, to replace the instance after a Rust panic; the recovery itself lives in
// wasm-bindgen's glue, which resets the wasm instance on the next call, and the front keeps no
// state in an entrypoint instance. Every request of the site comes through here.
//
// When the app Worker throws (or the runtime stops it at a limit) the call rejects, and the
// runtime would answer its own HTML error page: `appFailed` answers the API's JSON 503 instead.
import Entrypoint from "./glue.js";

const { handleFetch, appFailed } = Entrypoint.prototype;

export default {
  fetch(request, env) {
    try {
      return handleFetch(request, env).catch((error) => appFailed(request, error));
    } catch (error) {
      return appFailed(request, error);
    }
  },
};
