// After `vite build`: writes dist/.source-hash (a SHA-256 over the sources
// the build was made from, checked by the Rust test `dashboard::dist_is_fresh`)
// and a gzip copy of every compressible asset (served to browsers that
// accept gzip, so the server needs no compression at run time).
//
// Keep the file list and hashing in step with `source_hash` in
// server/tests/it/dashboard.rs.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");

/** Files whose content decides the build, as sorted `/`-separated paths. */
export function sourceFiles() {
  const out = [];
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(root, path).split(sep).join("/"));
    }
  };
  walk(join(root, "src"));
  for (const f of ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"]) out.push(f);
  return out.sort();
}

/** SHA-256 (hex) of `path\0content\0` for every source file, in order. */
export function sourceHash() {
  const h = createHash("sha256");
  for (const f of sourceFiles()) {
    h.update(f);
    h.update("\0");
    h.update(readFileSync(join(root, f)));
    h.update("\0");
  }
  return h.digest("hex");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = join(root, "dist");
  let gz = 0;
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(js|css|html|svg|json)$/.test(name)) {
        const body = readFileSync(path);
        if (body.length < 1024) continue;
        writeFileSync(path + ".gz", gzipSync(body, { level: 9 }));
        gz++;
      }
    }
  };
  walk(dist);
  writeFileSync(join(dist, ".source-hash"), sourceHash() + "\n");
  console.log(`stamp: ${gz} gzip files, source hash written to dist/.source-hash`);
}
