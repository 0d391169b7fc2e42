// Samples the CPU of a Worker under `wrangler dev` through its V8 inspector (wrangler serves it
// on 127.0.0.1:9229 by default) and prints where the time went: self and inclusive time per
// function, wasm functions by name — build with `EDGESTACK_WASM_NAMES=keep cargo xtask build`
// first, since a normal build drops the names. Run it while a load generator drives the Worker:
//   node bench/profile/cpu-profile.mjs [seconds=5] [ws://127.0.0.1:9229/ws] [out.cpuprofile]
// Proportions are what it is for: sampling time is wall-clock inside the isolate, so absolute
// figures move with the machine's load, the split between functions much less.
import { writeFileSync } from "node:fs";
import WebSocket from "ws";

const seconds = Number(process.argv[2] ?? 5);
const url = process.argv[3] ?? "ws://127.0.0.1:9229/ws";
const out = process.argv[4];

// wrangler's inspector proxy accepts only local origins.
const socket = new WebSocket(url, { headers: { Origin: new URL(url).origin.replace("ws:", "http:") } });
let nextId = 1;
const pending = new Map();
const send = (method, params = {}) =>
  new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    socket.send(JSON.stringify({ id, method, params }));
  });
socket.on("message", (data) => {
  const message = JSON.parse(String(data));
  const waiter = pending.get(message.id);
  if (!waiter) return;
  pending.delete(message.id);
  message.error ? waiter.reject(new Error(JSON.stringify(message.error))) : waiter.resolve(message.result);
});
await new Promise((resolve, reject) => {
  socket.on("open", resolve);
  socket.on("error", reject);
});

await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 50 });
await send("Profiler.start");
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
const { profile } = await send("Profiler.stop");
socket.close();
if (out) writeFileSync(out, JSON.stringify(profile));

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const selfUs = new Map();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

const name = (node) => {
  const frame = node.callFrame;
  const fn = frame.functionName || "(anonymous)";
  return frame.url ? `${fn} ${frame.url.split("/").pop()}` : fn;
};
const self = new Map();
const inclusive = new Map();
let total = 0;
for (const [id, us] of selfUs) {
  total += us;
  const node = byId.get(id);
  self.set(name(node), (self.get(name(node)) ?? 0) + us);
  const seen = new Set();
  for (let at = id; at !== undefined; at = parent.get(at)) {
    const key = name(byId.get(at));
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + us);
  }
}
const idle = (self.get("(idle)") ?? 0) + (self.get("(program)") ?? 0) + (self.get("(garbage collector)") ?? 0);
const busy = total - (self.get("(idle)") ?? 0);
const show = (title, map) => {
  console.log(`\n${title} (share of busy time ${(busy / 1000).toFixed(0)} ms)`);
  [...map]
    .filter(([key]) => key !== "(idle)")
    .sort((a, b) => b[1] - a[1])
    .slice(0, 40)
    .forEach(([key, us]) => console.log(`${((100 * us) / busy).toFixed(1).padStart(6)} %  ${key}`));
};
console.log(`sampled ${(total / 1000).toFixed(0)} ms, idle ${((self.get("(idle)") ?? 0) / 1000).toFixed(0)} ms, GC ${((self.get("(garbage collector)") ?? 0) / 1000).toFixed(0)} ms, program ${((self.get("(program)") ?? 0) / 1000).toFixed(0)} ms`);
show("self time", self);
show("inclusive time", inclusive);
