#!/usr/bin/env node
// Node.js wrapper around the course's command-line tool (`python -m qhelpers`), with no dependencies.
//
// As a command:  node scripts/qhelpers.js quantize -o course_int8.pt     (any qhelpers subcommand and options)
//   streams the tool's output and exits with its exit code (0 ok, 1 failure, 2 usage error, 130/143 interrupted).
// As a module:
//   const qh = require('./scripts/qhelpers.js');
//   const report = await qh.quantize({ output: 'course_int8.pt', engine: 'x86', calibLimit: 100 });
//   const phone = await qh.quantize({ output: 'course_int8.pte', target: 'xnnpack' });  // ExecuTorch .pte (notebook 08)
//   // report is the parsed JSON report; a failed run rejects with a QhelpersError carrying exitCode.
//
// Python: $QHELPERS_PYTHON if set, else .venv/bin/python of this repository (Windows: .venv\Scripts\python.exe).
'use strict';

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const REPO_DIR = path.resolve(__dirname, '..');
const EXIT_FAILURE = 1;

/** An error of the wrapper itself (no Python, no package) or a failed run (`exitCode` set). */
class QhelpersError extends Error {
  constructor(message, { code = 'EQHELPERS', exitCode = EXIT_FAILURE } = {}) {
    super(message);
    this.name = 'QhelpersError';
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** The Python interpreter to run: $QHELPERS_PYTHON, else the repository's .venv. Throws if it does not exist. */
function findPython(env = process.env) {
  const fromEnv = env.QHELPERS_PYTHON;
  const venv = process.platform === 'win32'
    ? path.join(REPO_DIR, '.venv', 'Scripts', 'python.exe')
    : path.join(REPO_DIR, '.venv', 'bin', 'python');
  const python = fromEnv || venv;
  let ok = false;
  try {
    fs.accessSync(python, fs.constants.X_OK);
    ok = fs.statSync(python).isFile();
  } catch (_) {
    ok = false;
  }
  if (!ok) {
    const where = fromEnv ? `QHELPERS_PYTHON=${fromEnv}` : venv;
    throw new QhelpersError(
      `Python not found or not executable: ${where}. Run \`make setup\` in ${REPO_DIR}, or set QHELPERS_PYTHON to a Python that has qhelpers installed.`,
      { code: 'ENOPYTHON' },
    );
  }
  return python;
}

/** Throws unless `python` can import the qhelpers package (checked without importing torch, so it is quick). */
function checkPackage(python, env = process.env) {
  const probe = 'import importlib.util, sys\n'
    + 'spec = importlib.util.find_spec("qhelpers")\n'
    + 'sys.exit(0 if spec is not None and spec.origin is not None else 3)\n';
  const result = spawnSync(python, ['-c', probe], { env, encoding: 'utf8' });
  if (result.error) {
    throw new QhelpersError(`cannot run ${python}: ${result.error.message}`, { code: 'ENOPYTHON' });
  }
  if (result.status !== 0) {
    throw new QhelpersError(
      `the qhelpers package is not installed for ${python}. Run \`make setup\` in ${REPO_DIR} (pip install -e .).`,
      { code: 'ENOPACKAGE' },
    );
  }
}

/**
 * Run `python -m qhelpers ...args`; resolves with the exit code (whatever it is), rejects only when Python or the
 * package is missing. Output is streamed to this process (`stdio: 'inherit'`) unless `options.stdio` says otherwise;
 * with `options.onStdout`/`onStderr` callbacks the output is piped, passed to them and still echoed unless `quiet`.
 */
function run(args, options = {}) {
  const env = options.env || process.env;
  return new Promise((resolve, reject) => {
    let python;
    try {
      python = findPython(env);
      checkPackage(python, env);
    } catch (err) {
      reject(err);
      return;
    }
    const piped = Boolean(options.onStdout || options.onStderr || options.quiet);
    const child = spawn(python, ['-m', 'qhelpers', ...args.map(String)], {
      env,
      cwd: options.cwd,
      stdio: piped ? ['inherit', 'pipe', 'pipe'] : options.stdio || 'inherit',
    });
    if (piped) {
      child.stdout.on('data', (chunk) => {
        if (options.onStdout) options.onStdout(chunk.toString());
        if (!options.quiet) process.stdout.write(chunk);
      });
      child.stderr.on('data', (chunk) => {
        if (options.onStderr) options.onStderr(chunk.toString());
        if (!options.quiet) process.stderr.write(chunk);
      });
    }
    // With forwardSignals (the command): a SIGTERM to this process is passed on to the tool, so that it cleans up
    // and exits 143. Ctrl-C in a terminal already reaches the tool (same process group), so SIGINT is only kept
    // from killing this process before the tool has exited with its own code (130).
    const onInt = () => {};
    const onTerm = () => { if (child.exitCode === null) child.kill('SIGTERM'); };
    if (options.forwardSignals) {
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
    }
    child.on('error', (err) => reject(new QhelpersError(`cannot run ${python}: ${err.message}`, { code: 'ENOPYTHON' })));
    child.on('close', (code, signal) => {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', onTerm);
      const signals = { SIGINT: 130, SIGTERM: 143, SIGKILL: 137 };
      resolve(code !== null ? code : signals[signal] || EXIT_FAILURE);
    });
  });
}

const kebab = (name) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** `{ calibLimit: 100, noProgress: true }` -> `['--calib-limit', '100', '--no-progress']` (false/null/undefined are left out). */
function toArgs(options) {
  const args = [];
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined || value === null || value === false) continue;
    args.push(`--${kebab(key)}`);
    if (value !== true) args.push(String(value));
  }
  return args;
}

/** Where the CLI writes the report when --report is not given: the output's name with `.json`. */
function defaultReportPath(output) {
  const ext = path.extname(output);
  return (ext ? output.slice(0, -ext.length) : output) + '.json';
}

/**
 * Post-training static quantization through the CLI; resolves with the parsed JSON report.
 * `options`: output (required), target ('torchscript' default, or 'xnnpack' for an ExecuTorch .pte), report, arch,
 * checkpoint, calib, calibLimit, batchSize, engine, weightQuant, eval, evalLimit, latencySeconds, threads, imageSize,
 * numClasses, seed, noProgress, verbose (same names as the CLI's flags; passed through as they are).
 * `runOptions` are passed to run() (env, cwd, quiet, onStdout, onStderr).
 */
async function quantize(options, runOptions = {}) {
  if (!options || typeof options.output !== 'string' || options.output === '') {
    throw new QhelpersError("quantize() needs options.output, the file to write (.pt TorchScript, or .pte with target: 'xnnpack')", { exitCode: 2 });
  }
  const report = options.report || defaultReportPath(options.output);
  const cwd = runOptions.cwd || process.cwd();
  const code = await run(['quantize', ...toArgs({ ...options, report })], runOptions);
  if (code !== 0) {
    throw new QhelpersError(`qhelpers quantize failed with exit code ${code} (its error is on stderr above)`, { exitCode: code });
  }
  return JSON.parse(fs.readFileSync(path.resolve(cwd, report), 'utf8'));
}

module.exports = { QhelpersError, REPO_DIR, findPython, checkPackage, run, toArgs, defaultReportPath, quantize };

if (require.main === module) {
  run(process.argv.slice(2), { forwardSignals: true }).then(
    (code) => { process.exitCode = code; },
    (err) => {
      process.stderr.write(`qhelpers.js: error: ${err.message}\n`);
      process.exitCode = err.exitCode || EXIT_FAILURE;
    },
  );
}
