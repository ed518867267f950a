// Warren's Node bootstrap: resolve `_HANDLER` ("dir/file.export[.more]") to a function.
//
// CommonJS (`.js`, `.cjs`) is loaded with require, ES modules (`.mjs`, or `.js` under a
// package.json with "type": "module") with import(), as Lambda's Node runtime does.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { RuntimeError } from "./logging.mjs";

const EXTENSIONS = [".js", ".mjs", ".cjs"];

function packageType(dir, root) {
  for (let at = dir; ; at = path.dirname(at)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(at, "package.json"), "utf8")).type || "commonjs";
    } catch {
      // No package.json here (or not JSON): look further up.
    }
    if (at === root || at === path.dirname(at)) return "commonjs";
  }
}

function locate(root, modulePath) {
  for (const ext of EXTENSIONS) {
    const file = path.resolve(root, modulePath + ext);
    if (fs.existsSync(file)) return file;
  }
  return null;
}

function isEsm(file, root) {
  if (file.endsWith(".mjs")) return true;
  if (file.endsWith(".cjs")) return false;
  return packageType(path.dirname(file), root) === "module";
}

async function load(file, root) {
  try {
    if (isEsm(file, root)) return await import(pathToFileURL(file).href);
    return createRequire(file)(file);
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new RuntimeError("Runtime.UserCodeSyntaxError", `${err.name}: ${err.message}`);
    }
    if (err && (err.code === "MODULE_NOT_FOUND" || err.code === "ERR_MODULE_NOT_FOUND")) {
      throw new RuntimeError("Runtime.ImportModuleError", `Error: ${err.message}`);
    }
    throw err; // module-level code threw: reported as that error, as on Lambda
  }
}

export async function loadHandler(root, spec) {
  const base = (spec || "").lastIndexOf("/") + 1;
  const dot = (spec || "").indexOf(".", base);
  if (!spec || dot < 0 || dot === spec.length - 1) {
    throw new RuntimeError("Runtime.MalformedHandlerName", `Bad handler ${spec}`);
  }
  const modulePath = spec.slice(0, dot);
  const exportPath = spec.slice(dot + 1);
  const file = locate(root, modulePath);
  if (file === null) {
    throw new RuntimeError(
      "Runtime.ImportModuleError",
      `Error: Cannot find module '${modulePath}'`,
    );
  }
  let target = await load(file, root);
  for (const part of exportPath.split(".")) target = target == null ? undefined : target[part];
  if (typeof target !== "function") {
    throw new RuntimeError(
      "Runtime.HandlerNotFound",
      `${modulePath}.${exportPath} is undefined or not exported`,
    );
  }
  return target;
}
