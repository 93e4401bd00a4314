// DataScript side of bench/compare: node datascript_runner.js RESULTS_DIR OUT_JSON
// Loads people.json / users.json, runs workload.json's queries through DataScript's JS
// API (ds.q with EDN query text), times each in-process (warm-up, then N reps, median).
"use strict";
const fs = require("fs");
const path = require("path");
const { performance } = require("perf_hooks");

const [resultsDir, outPath] = process.argv.slice(2);
let ds;
try {
  ds = require(path.join(__dirname, "node_modules", "datascript"));
} catch (e) {
  fs.writeFileSync(outPath, JSON.stringify({ system: "datascript", error: "datascript npm package missing: " + e.message }));
  process.exit(0);
}
const spec = JSON.parse(fs.readFileSync(path.join(resultsDir, "workload.json"), "utf8"));
const T = spec.timing;
const log = (...a) => console.error("[datascript]", ...a);

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

function bench(fn) {
  let t0 = performance.now(), w = 0, out;
  do { out = fn(); w++; } while (w < T.warmup_max && performance.now() - t0 < T.warmup_s * 1000);
  const times = [];
  const start = performance.now();
  for (let i = 0; i < T.reps; i++) {
    const a = performance.now();
    out = fn();
    times.push(performance.now() - a);
    if (i >= 2 && performance.now() - start > T.max_s * 1000) break;
  }
  return { median_ms: median(times), min_ms: Math.min(...times), reps: times.length, warmup: w, out };
}

// Schema: :db/index where the shared schema indexes; DataScript has no value types.
// DataScript's JS API names attributes with strings, so attribute keywords in the query
// and pull text become strings (:name -> "name"). Keyword values: the JS API cannot build
// keywords, so :sex is stored as the string "male"/"female" and the query literal :male
// becomes "male" (see README).
function jsText(text, dataset) {
  for (const a of Object.keys(spec.schema[dataset]))
    text = text.replace(new RegExp(":" + a.replace("/", "\\/") + "(?=[\\s\\]\\)])", "g"), JSON.stringify(a));
  return text.replace(/"sex" :male/g, '"sex" "male"');
}
function load(name) {
  const schema = {};
  for (const [a, s] of Object.entries(spec.schema[name])) if (s.index) schema[a] = { ":db/index": true };
  const rows = JSON.parse(fs.readFileSync(path.join(resultsDir, name + ".json"), "utf8"));
  const ents = rows.map(([id, m]) => {
    const o = { ":db/id": id };
    for (const [k, v] of Object.entries(m)) o[k] = v !== null && typeof v === "object" ? v.kw : v;
    return o;
  });
  let db = ds.empty_db(schema);
  for (let i = 0; i < ents.length; i += 1000) db = ds.db_with(db, ents.slice(i, i + 1000));
  return db;
}

const t0 = performance.now();
const dbs = {};
for (const name of Object.keys(spec.sizes)) dbs[name] = load(name);
const loadMs = performance.now() - t0;
log(`loaded ${JSON.stringify(spec.sizes)} in ${loadMs.toFixed(0)} ms`);

const results = {};
for (const q of spec.queries) {
  const db = dbs[q.dataset];
  try {
    let r;
    if (q.kind === "pull") {
      const pat = jsText(q.pattern, q.dataset);
      r = bench(() => ds.pull_many(db, pat, q.ids));
    } else {
      const text = jsText(q.q, q.dataset);
      r = bench(() => ds.q(text, db, ...q.inputs));
    }
    results[q.name] = { median_ms: r.median_ms, min_ms: r.min_ms, reps: r.reps, warmup: r.warmup, n_results: r.out.length };
    log(`${q.name}: ${r.median_ms.toFixed(3)} ms (${r.out.length} rows)`);
  } catch (e) {
    results[q.name] = { error: String(e && e.message || e) };
    log(`${q.name}: ERROR ${e}`);
  }
}
const version = JSON.parse(fs.readFileSync(path.join(__dirname, "node_modules", "datascript", "package.json"), "utf8")).version;
fs.writeFileSync(outPath, JSON.stringify({ system: "datascript", version, runtime: "node " + process.version, load_ms: loadMs, results }, null, 1));
