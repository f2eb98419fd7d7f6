/**
 * The web console's static files (src/admin/console/: one HTML page, a script, a stylesheet; no
 * build step, nothing from a CDN). They hold no data and are served without the token; every
 * figure on the page comes from the JSON API, which needs it.
 */
import { readFileSync } from "node:fs";
import type http from "node:http";

/**
 * Where the files are: the same path from src/admin (tsx) and from dist/admin (built). The npm
 * package (`files`) and the Docker image ship this folder beside dist/ for that reason.
 */
const DIR = new URL("../../src/admin/console/", import.meta.url);

const FILES: Readonly<Record<string, [file: string, type: string]>> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/console/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/console/app.css": ["app.css", "text/css; charset=utf-8"],
};

const cache = new Map<string, Buffer>();

function read(file: string): Buffer {
  let b = cache.get(file);
  if (b === undefined) {
    b = readFileSync(new URL(file, DIR));
    cache.set(file, b);
  }
  return b;
}

/** Whether `path` is one of the console's files. */
export function isConsolePath(path: string): boolean {
  return Object.hasOwn(FILES, path);
}

/** Answer a GET or HEAD of one of the console's files. */
export function serveConsole(path: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const entry = FILES[path];
  if (entry === undefined) return;
  const body = read(entry[0]);
  res.writeHead(200, {
    "Content-Type": entry[1],
    "Content-Length": body.length,
    "Cache-Control": "no-cache",
    "Content-Security-Policy":
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}
