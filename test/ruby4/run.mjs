// Runs a Ruby script on ruby.wasm (Ruby 4.0, WASI) under node:
//
//   node test/ruby4/run.mjs DIR SCRIPT [ARGS...]
//
// DIR holds node_modules/@ruby/4.0-wasm-wasi (make test-ruby4 installs it
// there). The script sees this checkout's lib/ and test/ (and DIR's gems)
// under /kino, read-only, and an empty writable /tmp; it runs with
// ARGV = ARGS, and its value, when an Integer, is the exit status.
//
// ruby.wasm is a reactor module with JS interop, so it is started through
// @ruby/wasm-wasi's RubyVM. Its file system is browser_wasi_shim's, in
// memory: node 20's own WASI corrupts its heap after a `require` searches
// a mounted host directory (node then crashes at exit).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");

// A browser_wasi_shim Directory holding a copy of host directory dir.
function tree(shim, dir) {
  const entries = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) entries.push([entry.name, tree(shim, full)]);
    else if (entry.isFile()) entries.push([entry.name, new shim.File(fs.readFileSync(full), { readonly: true })]);
  }
  return new shim.Directory(entries);
}

// A Directory holding the given checkout-relative paths, nested.
function mount(shim, relatives) {
  const top = new Map();
  for (const relative of relatives) {
    const parts = relative.split("/");
    let level = top;
    for (const part of parts.slice(0, -1)) {
      if (!level.has(part)) level.set(part, new Map());
      level = level.get(part);
    }
    level.set(parts[parts.length - 1], tree(shim, path.join(root, relative)));
  }
  const build = (map) =>
    new shim.Directory([...map].map(([name, v]) => [name, v instanceof Map ? build(v) : v]));
  return build(top);
}

async function main() {
  const [dir, script, ...args] = process.argv.slice(2);
  if (!dir || !script) {
    console.error("usage: node test/ruby4/run.mjs DIR SCRIPT [ARGS...]");
    return 2;
  }
  const modules = path.resolve(dir, "node_modules");
  const require = createRequire(path.join(modules, "x.js"));
  const shim = await import(pathToFileURL(require.resolve("@bjorn3/browser_wasi_shim")).href);
  const { RubyVM } = require("@ruby/wasm-wasi/dist/vm");
  const wasm = path.join(modules, "@ruby/4.0-wasm-wasi/dist/ruby+stdlib.wasm");

  const out = (stream) => new shim.ConsoleStdout((bytes) => stream.write(bytes));
  const checkout = mount(shim, ["lib", "test", path.relative(root, path.resolve(dir, "gems"))]);
  const fds = [
    new shim.OpenFile(new shim.File([])), // stdin: empty
    out(process.stdout),
    out(process.stderr),
    new shim.PreopenDirectory("/kino", checkout.contents),
    new shim.PreopenDirectory("/tmp", new Map()),
  ];
  const wasi = new shim.WASI(["ruby.wasm"], ["TMPDIR=/tmp", "HOME=/tmp", "LANG=C.UTF-8"], fds, { debug: false });
  const module = await WebAssembly.compile(fs.readFileSync(wasm));
  const { vm } = await RubyVM.instantiateModule({ module, wasip1: wasi });
  const result = vm.eval(`
    ARGV.replace(${JSON.stringify(args)}.map(&:to_s))
    Dir.chdir("/kino")
    begin
      eval(File.read(${JSON.stringify(script)}), TOPLEVEL_BINDING, ${JSON.stringify("/kino/" + script)}, 1)
    ensure
      $stdout.flush
      $stderr.flush
    end
  `);
  const status = Number(result.toString());
  return Number.isInteger(status) ? status : 0;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    console.error(error && error.stack ? error.stack : error);
    process.exitCode = 1;
  }
);
