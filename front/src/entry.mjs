// The front Worker's JavaScript entry (`front/build/index.js`, written by `cargo xtask
// build-front`): the wasm build's handler behind a plain module export.
//
// As for the app Worker (src/entry.mjs, docs/performance.md): worker-build's own entry (renamed
// `glue.js`) builds a WorkerEntrypoint instance and Proxies around it and each method on every
// request, to replace the instance after a Rust panic; the recovery itself lives in
// wasm-bindgen's glue, which resets the wasm instance on the next call, and the front keeps no
// state in an entrypoint instance. Every request of the site comes through here.
import Entrypoint from "./glue.js";

const { handleFetch } = Entrypoint.prototype;

export default {
  fetch(request, env) {
    return handleFetch(request, env);
  },
};
