// Warren's Node.js runtime: load the handler once, then loop on the Lambda Runtime API.
//
// Started by the sandbox with AWS_LAMBDA_RUNTIME_API, _HANDLER and LAMBDA_TASK_ROOT set, in the
// code directory. Async handlers answer with their promise; callback handlers with
// `callback(err, result)` (or context.succeed/fail/done), and then, while
// `context.callbackWaitsForEmptyEventLoop` is true (the default), only once the event loop has
// nothing left to run, as on Lambda.
import { RuntimeClient } from "./client.mjs";
import { loadHandler } from "./loader.mjs";
import { RuntimeError, errorObject, logError, patchConsole, setRequestId } from "./logging.mjs";

const env = process.env;
const client = new RuntimeClient(env.AWS_LAMBDA_RUNTIME_API);
let current = null; // the request id in flight, for an uncaught error to be posted against

function makeContext(requestId, headers, settle) {
  const deadline = Number(headers["lambda-runtime-deadline-ms"]);
  const parse = (name) => {
    try {
      return headers[name] ? JSON.parse(headers[name]) : undefined;
    } catch {
      return undefined;
    }
  };
  const context = {
    awsRequestId: requestId,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    identity: parse("lambda-runtime-cognito-identity"),
    clientContext: parse("lambda-runtime-client-context"),
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: (err, result) => settle(err, result, true),
    succeed: (result) => settle(null, result, true),
    fail: (err) => settle(err ?? "handled", undefined, true),
  };
  return context;
}

// Runs one invocation; resolves to [error | null, result].
function run(handler, event, requestId, headers) {
  return new Promise((resolve) => {
    let settled = false;
    let context = null;
    const settle = (err, result, viaCallback) => {
      if (settled) return;
      settled = true;
      const answer = () => resolve([err ?? null, result]);
      if (viaCallback && context.callbackWaitsForEmptyEventLoop) {
        client.unref(); // `beforeExit` fires once nothing but our own socket is left
        process.once("beforeExit", () => {
          client.ref();
          answer();
        });
      } else {
        answer();
      }
    };
    context = makeContext(requestId, headers, settle);
    let returned;
    try {
      returned = handler(event, context, (err, result) => settle(err, result, true));
    } catch (err) {
      settle(err, undefined, false);
      return;
    }
    if (returned && typeof returned.then === "function") {
      returned.then(
        (result) => settle(null, result, false),
        (err) => settle(err ?? new Error("the handler's promise was rejected"), undefined, false),
      );
    } else if (handler.length < 3) {
      settle(null, returned, false);
    }
  });
}

// Posts the answer (written at once, before this returns); the reply is not waited for, so that
// the next GET follows it on the wire. A refused answer is only logged: Lambda has judged it.
function answer(requestId, err, result) {
  let posted;
  if (err !== null) {
    const error = errorObject(err);
    logError("Invoke Error", error);
    posted = client.fail(requestId, error);
  } else {
    let body;
    try {
      body = JSON.stringify(result === undefined ? null : result);
    } catch (cause) {
      const error = errorObject(cause, "Runtime.MarshalError");
      error.errorMessage = `Unable to stringify response body: ${error.errorMessage}`;
      logError("Invoke Error", error);
      posted = client.fail(requestId, error);
    }
    if (posted === undefined) posted = client.respond(requestId, body);
  }
  posted.then(
    (reply) => {
      if (reply.status >= 400) logError("Runtime API refused the answer", String(reply.body));
    },
    () => {}, // the connection broke: the next GET fails too, and that ends the process
  );
}

async function fatal(label, err, type, code) {
  const error = errorObject(err, type);
  logError(label, error);
  try {
    if (current !== null) await client.fail(current, error);
    else await client.initFailed(error);
  } finally {
    process.exit(code);
  }
}

async function main() {
  patchConsole();
  process.on("uncaughtException", (err) => fatal("Uncaught Exception", err, undefined, 129));
  process.on("unhandledRejection", (reason) =>
    fatal("Unhandled Promise Rejection", reason, "Runtime.UnhandledPromiseRejection", 128),
  );
  let handler;
  try {
    handler = await loadHandler(env.LAMBDA_TASK_ROOT || process.cwd(), env._HANDLER);
  } catch (err) {
    const error = errorObject(err);
    logError("Init Error", error);
    await client.initFailed(error);
    process.exit(1);
  }
  for (;;) {
    const { headers, body } = await client.next();
    const requestId = headers["lambda-runtime-aws-request-id"];
    current = requestId;
    setRequestId(requestId);
    env._X_AMZN_TRACE_ID = headers["lambda-runtime-trace-id"] || "";
    let event;
    try {
      event = body.length ? JSON.parse(body) : null;
    } catch (err) {
      current = null;
      answer(requestId, new RuntimeError("Runtime.UnmarshalError", err.message), undefined);
      continue;
    }
    const [err, result] = await run(handler, event, requestId, headers);
    current = null;
    answer(requestId, err, result);
  }
}

main();
