// Warren's Node bootstrap: console output in Lambda's Node format, and errors in Lambda's shape.
//
// Each console line is `<ISO time>\t<request id>\t<LEVEL>\t<message>`, the request id being
// `undefined` during init, as on Lambda. Lines are written synchronously to fd 1 (a pipe), so
// they are in the sandbox's log before the invocation's answer is posted.
import fs from "node:fs";
import util from "node:util";

let requestId = "undefined";
const OWN_DIR = new URL(".", import.meta.url).href; // the bootstrap's frames are not the user's

export function setRequestId(id) {
  requestId = id;
}

function write(level, args) {
  const line = `${new Date().toISOString()}\t${requestId}\t${level}\t${util.format(...args)}\n`;
  try {
    fs.writeSync(1, line);
  } catch {
    // A closed log pipe must not take the handler down with it.
  }
}

export function patchConsole() {
  console.log = (...args) => write("INFO", args);
  console.info = (...args) => write("INFO", args);
  console.warn = (...args) => write("WARN", args);
  console.error = (...args) => write("ERROR", args);
  console.debug = (...args) => write("DEBUG", args);
  console.trace = (...args) => {
    const stack = new Error().stack.split("\n").slice(2).join("\n");
    write("TRACE", [util.format(...args) + "\n" + stack]);
  };
}

export function logError(label, error) {
  write("ERROR", [`${label} \t${JSON.stringify(error)}`]);
}

// Lambda's Node error object: {errorType, errorMessage, trace}.
export function errorObject(err, forcedType) {
  if (err instanceof Error) {
    return {
      errorType: forcedType || err.name || err.constructor?.name || "Error",
      errorMessage: err.message,
      trace: String(err.stack || "")
        .split("\n")
        .filter((line) => !line.includes(OWN_DIR) && !line.includes("(<anonymous>)")),
    };
  }
  if (typeof err === "string") {
    return { errorType: forcedType || "string", errorMessage: err, trace: [] };
  }
  let message;
  try {
    message = JSON.stringify(err);
  } catch {
    message = String(err);
  }
  return { errorType: forcedType || typeof err, errorMessage: String(message), trace: [] };
}

export class RuntimeError extends Error {
  constructor(type, message) {
    super(message);
    this.name = type;
  }
}
