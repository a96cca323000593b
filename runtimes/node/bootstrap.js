/**
 * Nimbus Node.js Lambda runtime bootstrap (Node core modules only).
 *
 * Launched as `node bootstrap.js` with cwd = the function's code directory.
 * It speaks the AWS Lambda Runtime API (2018-06-01) at $AWS_LAMBDA_RUNTIME_API
 * and reproduces the observable behaviour of AWS's Node.js runtime interface
 * client (aws-lambda-nodejs-runtime-interface-client): handler resolution
 * (.js/.mjs/.cjs, "type": "module"), Runtime.* errors, async / callback / sync
 * handlers with callbackWaitsForEmptyEventLoop, the context object, the
 * patched console, awslambda.streamifyResponse, and the error payloads and log
 * lines. One process serves invocations in a loop, so module state persists.
 */
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');

const API = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const HOST = API.slice(0, API.lastIndexOf(':')).replace(/^\[|\]$/g, '');
const PORT = parseInt(API.slice(API.lastIndexOf(':') + 1), 10);
const BASE = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// ------------------------------------------------------------------ errors

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class MalformedStreamingHandler extends Error {}
class NodeJsExit extends Error {
  constructor() {
    super('The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly caused by a Promise that was never settled. For more information, see https://nodejs.org/docs/latest/api/process.html#exit-codes');
  }
}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
for (const E of [ImportModuleError, HandlerNotFound, MalformedHandlerName, UserCodeSyntaxError,
  MalformedStreamingHandler, NodeJsExit, UnhandledPromiseRejection]) {
  E.prototype.name = `Runtime.${E.name}`;
}

const intoError = (err) => (err instanceof Error ? err : new Error(err));

const isErrorLike = (o) => o && typeof o.name === 'string' && o.name && typeof o.message === 'string'
  && o.message && typeof o.stack === 'string' && o.stack;

/** The body posted to /error: {errorType, errorMessage, trace}. */
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return { errorType: error.name, errorMessage: error.message, trace: error.stack.split('\n') };
    }
    return { errorType: typeof error, errorMessage: error.toString(), trace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

/** The "\t{...}" JSON appended to "Invoke Error" / "Uncaught Exception" log lines. */
function toFormatted(error) {
  const withProps = (_k, v) => {
    if (!(v instanceof Error)) return v;
    const ret = Object.assign({ errorType: v.name, errorMessage: v.message, code: v.code }, v);
    if (typeof v.stack === 'string') ret.stack = v.stack.split('\n');
    return ret;
  };
  try {
    return '\t' + JSON.stringify(error, withProps);
  } catch (_) {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

// ------------------------------------------------------------------ console

const REQUEST_ID = Symbol.for('aws.lambda.runtime.requestId');
const LEVELS = {
  TRACE: { name: 'TRACE', priority: 1 }, DEBUG: { name: 'DEBUG', priority: 2 },
  INFO: { name: 'INFO', priority: 3 }, WARN: { name: 'WARN', priority: 4 },
  ERROR: { name: 'ERROR', priority: 5 }, FATAL: { name: 'FATAL', priority: 6 },
};
const JSON_LOGS = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
let logError; // (message, error) -> void, set by patchConsole

function jsonErrorReplacer(_k, v) {
  if (!(v instanceof Error)) return v;
  return Object.assign({
    errorType: v?.constructor?.name ?? 'UnknownError',
    errorMessage: v.message,
    stackTrace: typeof v.stack === 'string' ? v.stack.split('\n') : v.stack,
  }, v);
}

function formatJson(level, params) {
  const result = { timestamp: new Date().toISOString(), level: level.name, requestId: global[REQUEST_ID] };
  if (params.length === 1) {
    result.message = params[0];
    try {
      return JSON.stringify(result, jsonErrorReplacer);
    } catch (_) {
      result.message = util.format(result.message);
      return JSON.stringify(result);
    }
  }
  result.message = util.format(...params);
  const err = params.find((p) => p instanceof Error);
  if (err) {
    result.errorType = err?.constructor?.name ?? 'UnknownError';
    result.errorMessage = err.message;
    result.stackTrace = typeof err.stack === 'string' ? err.stack.split('\n') : [];
  }
  return JSON.stringify(result);
}

function patchConsole() {
  const write = JSON_LOGS
    ? (level, params) => formatJson(level, params)
    : (level, params) => `${new Date().toISOString()}\t${global[REQUEST_ID]}\t${level.name}\t${util.format(...params)}`;
  // Multi-line messages stay one log event: \n -> \r, one line per call.
  const log = (level) => (msg, ...params) =>
    process.stdout.write(write(level, [msg, ...params]).replace(/\n/g, '\r') + '\n');
  const min = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] ?? LEVELS.TRACE;
  const nop = () => {};
  const at = (level) => (level.priority >= min.priority ? log(level) : nop);
  console.trace = at(LEVELS.TRACE);
  console.debug = at(LEVELS.DEBUG);
  console.info = at(LEVELS.INFO);
  console.log = console.info;
  console.warn = at(LEVELS.WARN);
  console.error = at(LEVELS.ERROR);
  console.fatal = log(LEVELS.FATAL);
  logError = JSON_LOGS
    ? (_msg, err) => console.error(intoError(err))
    : (msg, err) => console.error(msg, toFormatted(intoError(err)));
}

// ------------------------------------------------------------------ Runtime API client

/** One request over the shared keep-alive socket; retried once if that socket was closed. */
function request(method, urlPath, body, headers, retried) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port: PORT, method, path: urlPath, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (err) => {
      if (!retried && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
        resolve(request(method, urlPath, body, headers, true));
      } else {
        reject(err);
      }
    });
    req.end(body);
  });
}

const post = (urlPath, body, headers) => {
  const buf = Buffer.from(body === undefined ? '' : body, 'utf8');
  return request('POST', urlPath, buf, Object.assign(
    { 'Content-Type': 'application/json', 'Content-Length': buf.length }, headers));
};

function serialize(result) {
  try {
    return JSON.stringify(result === undefined ? null : result);
  } catch (_) {
    throw new Error('Unable to stringify response body');
  }
}

const client = {
  async nextInvocation() {
    const res = await request('GET', `${BASE}/invocation/next`);
    if (res.status !== 200) throw new Error(`Runtime API /next returned ${res.status}: ${res.body}`);
    return res;
  },
  /** Serializes synchronously (throws like the RIC), then posts and calls `callback`. */
  postInvocationResponse(result, id, callback) {
    const body = serialize(result);
    post(`${BASE}/invocation/${encodeURIComponent(id)}/response`, body).then(() => callback(), onFatal);
  },
  postInvocationError(error, id, callback) {
    post(`${BASE}/invocation/${encodeURIComponent(id)}/error`, serialize(toRapidResponse(error)),
      { [ERROR_TYPE_HEADER]: 'Unhandled' }).then(() => callback(), onFatal);
  },
  postInitError(error, callback) {
    const response = toRapidResponse(error);
    post(`${BASE}/init/error`, serialize(response), { [ERROR_TYPE_HEADER]: response.errorType })
      .then(() => callback(), onFatal);
  },
};

function onFatal(err) {
  process.stderr.write(`Nimbus runtime: lost the Runtime API: ${err && err.stack}\n`);
  process.exit(1);
}

// ------------------------------------------------------------------ handler loading

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HIGH_WATER_MARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType('application/vnd.awslambda.http-integration-response');
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(8)); // 8 NUL bytes separate the prelude from the body
    };
    return underlyingStream;
  }
}

function hasTypeModule(folder) {
  if (folder.endsWith('/node_modules')) return false;
  const pj = path.join(folder, 'package.json');
  if (fs.existsSync(pj)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(pj));
      if (pkg) return pkg.type === 'module';
    } catch (e) {
      console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
      return false;
    }
  }
  return folder === '/' ? false : hasTypeModule(path.resolve(folder, '..'));
}

const tryRequire = (file) => (fs.existsSync(file) ? require(file) : undefined);
const tryImport = async (file) => (fs.existsSync(file) ? import(file) : undefined);

async function loadModule(appRoot, moduleRoot, module) {
  const lambdaStylePath = path.resolve(appRoot, moduleRoot, module);
  const extensionless = tryRequire(lambdaStylePath);
  if (extensionless) return extensionless;
  const typeModule = hasTypeModule(path.dirname(lambdaStylePath));
  if (!typeModule) {
    const loaded = tryRequire(lambdaStylePath + '.js');
    if (loaded) return loaded;
  }
  const loaded = (typeModule && (await tryImport(lambdaStylePath + '.js')))
    || (await tryImport(lambdaStylePath + '.mjs'))
    || tryRequire(lambdaStylePath + '.cjs');
  if (loaded) return loaded;
  return require(require.resolve(module, { paths: [appRoot, moduleRoot] }));
}

async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(`'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`);
  }
  const handlerString = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerString));
  const match = handlerString.match(/^([^.]*)\.(.*)$/);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, module, handlerPath] = match;

  if (!['1', 'true'].includes(process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA)) {
    globalThis.awslambda = {
      streamifyResponse: (handler, options) => {
        handler[STREAMING] = 'response';
        if (typeof options?.highWaterMark === 'number') handler[HIGH_WATER_MARK] = parseInt(options.highWaterMark);
        return handler;
      },
      HttpResponseStream,
    };
  }

  let userApp;
  try {
    userApp = await loadModule(appRoot, moduleRoot, module);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(e);
    throw e;
  }
  const fn = handlerPath.split('.').reduce((obj, key) => obj && obj[key], userApp);
  if (!fn) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return fn;
}

function handlerMetadata(fn) {
  const mode = fn[STREAMING];
  if (mode !== undefined && mode !== null && mode !== false && mode !== 'response') {
    throw new MalformedStreamingHandler('Only response streaming is supported.');
  }
  let isAsync = false;
  try {
    isAsync = fn.constructor && fn.constructor.name === 'AsyncFunction';
  } catch (_) { /* ignore */ }
  const hwm = parseInt(fn[HIGH_WATER_MARK]);
  return { streaming: mode === 'response', isAsync, highWaterMark: isNaN(hwm) ? undefined : hwm };
}

// ------------------------------------------------------------------ invoke loop

let beforeExitListener = () => {};
const errorCallbacks = {
  uncaughtException: (error) => client.postInitError(error, () => process.exit(129)),
  unhandledRejection: (error) => client.postInitError(error, () => process.exit(128)),
};

function invokeContext(headers, base) {
  const h = (name) => headers[name];
  const parse = (value, name) => {
    if (value === undefined) return undefined;
    try {
      return JSON.parse(value);
    } catch (err) {
      throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
    }
  };
  if (h('lambda-runtime-trace-id')) process.env._X_AMZN_TRACE_ID = h('lambda-runtime-trace-id');
  else delete process.env._X_AMZN_TRACE_ID;
  const deadline = h('lambda-runtime-deadline-ms');
  return Object.assign(base, {
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
  }, {
    clientContext: parse(h('lambda-runtime-client-context'), 'ClientContext'),
    identity: parse(h('lambda-runtime-cognito-identity'), 'CognitoIdentity'),
    invokedFunctionArn: h('lambda-runtime-invoked-function-arn'),
    awsRequestId: h('lambda-runtime-aws-request-id'),
    tenantId: h('lambda-runtime-aws-tenant-id'),
    getRemainingTimeInMillis: () => deadline - Date.now(),
  });
}

/** callback + context.succeed/fail/done; only the first call of any of them counts. */
function buildCallbackContext(id, scheduleNext) {
  const postError = (err, cb) => {
    logError('Invoke Error', err);
    client.postInvocationError(err, id, cb);
  };
  let completed = false;
  const complete = (result, cb) => {
    if (completed) {
      console.error('Invocation has already been reported as done. Cannot call complete more than once per invocation.');
      return;
    }
    completed = true;
    client.postInvocationResponse(result, id, cb);
  };
  let waitForEmptyEventLoop = true;
  const callback = (err, result) => {
    beforeExitListener = () => {};
    if (err !== undefined && err !== null) postError(err, scheduleNext);
    else if (!waitForEmptyEventLoop) complete(result, scheduleNext);
    else beforeExitListener = () => setImmediate(() => complete(result, scheduleNext));
  };
  const done = (err, result) => {
    beforeExitListener = () => {};
    if (err !== undefined && err !== null) postError(err, scheduleNext);
    else complete(result, scheduleNext);
  };
  let finished = false;
  const once = (fn) => (...args) => {
    if (!finished) {
      fn(...args);
      finished = true;
    }
  };
  const context = {
    get callbackWaitsForEmptyEventLoop() { return waitForEmptyEventLoop; },
    set callbackWaitsForEmptyEventLoop(value) { waitForEmptyEventLoop = value; },
    succeed: once((result) => done(null, result)),
    fail: once((err) => (err === undefined || err === null ? done('handled') : done(err, null))),
    done: once(done),
  };
  return [once(callback), context, () => { completed = true; }];
}

function setErrorCallbacks(id) {
  errorCallbacks.uncaughtException = (error) => client.postInvocationError(error, id, () => process.exit(129));
  errorCallbacks.unhandledRejection = (error) => client.postInvocationError(error, id, () => process.exit(128));
}

const isPromise = (o) => o && o.then && typeof o.then === 'function';

function scheduleIteration(handler, meta) {
  setImmediate(() => {
    (meta.streaming ? handleOnceStreaming : handleOnce)(handler, meta).then(() => {}, (err) => {
      console.log(`Unexpected Top Level Error: ${err.toString()}`);
      errorCallbacks.uncaughtException(err);
    });
  });
}

async function handleOnce(handler, meta) {
  const { body, headers } = await client.nextInvocation();
  const id = headers['lambda-runtime-aws-request-id'];
  global[REQUEST_ID] = id;
  const [callback, callbackContext, markCompleted] = buildCallbackContext(id, () => scheduleIteration(handler, meta));
  try {
    setErrorCallbacks(id);
    // If the event loop drains before the handler reported a result: an async
    // handler's promise never settled (error); a sync/callback handler gets null.
    beforeExitListener = () => {
      markCompleted();
      if (meta.isAsync) {
        const error = new NodeJsExit();
        logError('Invoke Error', error);
        client.postInvocationError(error, id, () => scheduleIteration(handler, meta));
      } else {
        client.postInvocationResponse(null, id, () => scheduleIteration(handler, meta));
      }
    };
    const result = handler(JSON.parse(body), invokeContext(headers, callbackContext), callback);
    if (isPromise(result)) result.then(callbackContext.succeed, callbackContext.fail).catch(callbackContext.fail);
  } catch (err) {
    callback(err);
  }
}

/** awslambda.streamifyResponse handlers: chunked POST with the error in trailers. */
async function handleOnceStreaming(handler, meta) {
  const { body, headers } = await client.nextInvocation();
  const id = headers['lambda-runtime-aws-request-id'];
  global[REQUEST_ID] = id;
  let waitForEmptyEventLoop = true;
  const base = {
    get callbackWaitsForEmptyEventLoop() { return waitForEmptyEventLoop; },
    set callbackWaitsForEmptyEventLoop(value) { waitForEmptyEventLoop = value; },
  };
  const scheduleNext = () => {
    beforeExitListener = () => {};
    if (!waitForEmptyEventLoop) scheduleIteration(handler, meta);
    else beforeExitListener = () => setImmediate(() => scheduleIteration(handler, meta));
  };

  let responseDone;
  const done = new Promise((resolve, reject) => { responseDone = { resolve, reject }; });
  const stream = http.request({
    host: HOST, port: PORT, method: 'POST', agent, highWaterMark: meta.highWaterMark,
    path: `${BASE}/invocation/${encodeURIComponent(id)}/response`,
    headers: {
      'Lambda-Runtime-Function-Response-Mode': 'streaming',
      Trailer: 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body',
      'Content-Type': 'application/octet-stream',
    },
  }, (res) => res.on('data', () => {}).on('end', responseDone.resolve).on('error', responseDone.reject));
  stream.on('error', responseDone.reject);
  let started = false;
  const origWrite = stream.write.bind(stream);
  const origEnd = stream.end.bind(stream);
  stream.setContentType = (contentType) => {
    if (started) throw new Error('Cannot set content-type, too late.');
    stream.setHeader('Content-Type', contentType);
  };
  stream.write = (chunk, encoding, cb) => {
    if (typeof chunk !== 'string' && !Buffer.isBuffer(chunk) && chunk?.constructor !== Uint8Array) {
      chunk = JSON.stringify(chunk);
    }
    if (!started && typeof stream._onBeforeFirstWrite === 'function') stream._onBeforeFirstWrite((c) => origWrite(c));
    started = true;
    return origWrite(chunk, encoding, cb);
  };
  stream.end = (chunk, encoding, cb) => {
    if (typeof chunk === 'function') return origEnd(chunk);
    if (chunk !== undefined && chunk !== null) stream.write(chunk, encoding);
    return origEnd(typeof encoding === 'function' ? encoding : cb);
  };
  const fail = (err) => {
    logError('Invoke Error', err);
    const error = toRapidResponse(err);
    stream.addTrailers({
      'Lambda-Runtime-Function-Error-Type': error.errorType,
      'Lambda-Runtime-Function-Error-Body': Buffer.from(JSON.stringify(error)).toString('base64'),
    });
    if (!stream.writableEnded) origEnd();
    done.then(scheduleNext, scheduleNext);
  };

  try {
    setErrorCallbacks(id);
    beforeExitListener = () => scheduleIteration(handler, meta);
    const ctx = invokeContext(headers, base);
    const result = handler(JSON.parse(body), stream, ctx);
    if (!isPromise(result)) return fail('Streaming does not support non-async handlers.');
    if ((await result) !== undefined) console.warn('Streaming handlers ignore return values.');
    if (!stream.writableEnded) return fail('Response stream is not finished.');
    await done;
    scheduleNext();
  } catch (err) {
    fail(err);
  }
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const error = new UnhandledPromiseRejection(reason, promise);
    logError('Unhandled Promise Rejection', error);
    errorCallbacks.unhandledRejection(error);
  });
  process.on('beforeExit', () => beforeExitListener());

  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const handler = await loadHandler(appRoot, process.env._HANDLER || process.argv[2] || '');
  scheduleIteration(handler, handlerMetadata(handler));
}

main().catch((error) => {
  // Same path as AWS, where a failed load surfaces as an uncaught exception.
  logError('Uncaught Exception', error);
  errorCallbacks.uncaughtException(error);
});
