// Warren's Node bootstrap: the Runtime API client (HTTP/1.1 on one kept-alive loopback socket).
//
// Requests may be pipelined (HTTP/1.1 answers them in order): the loop sends its answer and its
// next GET together, so one wake-up per invocation suffices. Replies are read by Content-Length,
// as every Runtime API endpoint sends them. Hand-written on `net` rather than `http`: it is the
// warm path of every invocation, and the `http` agent costs more than the whole exchange.
import net from "node:net";

const HEAD_END = Buffer.from("\r\n\r\n");

export class RuntimeClient {
  constructor(address) {
    const colon = address.lastIndexOf(":");
    this.host = address.slice(0, colon).replace(/^\[|\]$/g, "");
    this.port = Number(address.slice(colon + 1));
    this.socket = null;
    this.buffer = Buffer.alloc(0);
    this.waiting = []; // {resolve, reject} of each request in flight, oldest first
  }

  connect() {
    const socket = net.connect({ host: this.host, port: this.port, noDelay: true });
    socket.on("data", (chunk) => this.onData(chunk));
    const fail = (err) => {
      if (this.socket === socket) this.socket = null;
      this.buffer = Buffer.alloc(0);
      const waiting = this.waiting;
      this.waiting = [];
      for (const w of waiting) w.reject(err || new Error("Runtime API connection closed"));
    };
    socket.on("error", fail);
    socket.on("close", () => fail(null));
    this.socket = socket;
    return socket;
  }

  // While a callback handler waits for an empty event loop, this socket must not count.
  unref() {
    if (this.socket) this.socket.unref();
  }

  ref() {
    if (this.socket) this.socket.ref();
  }

  // The request is written before this returns, so requests go out in the order of the calls.
  request(method, path, headers, body) {
    const text = body === undefined ? "" : body;
    let head = `${method} /2018-06-01/runtime/${path} HTTP/1.1\r\nHost: ${this.host}\r\n`;
    if (headers) for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
    head += `Content-Length: ${Buffer.byteLength(text)}\r\n\r\n`;
    const socket = this.socket || this.connect();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      socket.write(head + text); // one write, so one segment for a small request
    });
  }

  onData(chunk) {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.waiting.length && this.parseOne());
  }

  parseOne() {
    const end = this.buffer.indexOf(HEAD_END);
    if (end < 0) return false;
    const lines = this.buffer.toString("latin1", 0, end).split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers = {};
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(":");
      headers[lines[i].slice(0, colon).trim().toLowerCase()] = lines[i].slice(colon + 1).trim();
    }
    const length = Number(headers["content-length"] || 0);
    const start = end + HEAD_END.length;
    if (this.buffer.length < start + length) return false;
    const body = this.buffer.subarray(start, start + length);
    this.buffer = this.buffer.subarray(start + length);
    this.waiting.shift().resolve({ status, headers, body });
    return true;
  }

  async next() {
    const reply = await this.request("GET", "invocation/next");
    if (reply.status !== 200) {
      throw new Error(`Runtime API answered ${reply.status} to next: ${reply.body}`);
    }
    return reply;
  }

  respond(requestId, body) {
    return this.request("POST", `invocation/${requestId}/response`, null, body);
  }

  fail(requestId, error) {
    const headers = { "Lambda-Runtime-Function-Error-Type": error.errorType };
    return this.request("POST", `invocation/${requestId}/error`, headers, JSON.stringify(error));
  }

  initFailed(error) {
    const headers = { "Lambda-Runtime-Function-Error-Type": error.errorType };
    return this.request("POST", "init/error", headers, JSON.stringify(error));
  }
}
