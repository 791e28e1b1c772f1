// Tests of the Node.js wrapper, with Node's built-in runner:  node --test scripts/
// They run the real CLI through the project's .venv (or $QHELPERS_PYTHON); nothing is mocked but a missing Python.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const qh = require('./qhelpers.js');

const WRAPPER = path.join(__dirname, 'qhelpers.js');
const QUICK = ['--calib-limit', '64', '--batch-size', '64', '--no-progress'];

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'qhelpers-js-'));
}

/** Run `node scripts/qhelpers.js ...args` as a user would; resolves with { code, stdout, stderr, child }. */
function runCommand(args, { env = process.env, onStdout } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [WRAPPER, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; if (onStdout) onStdout(stdout, child); });
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

test('toArgs turns options into the CLI flags', () => {
  assert.deepEqual(
    qh.toArgs({ output: 'm.pt', calibLimit: 64, weightQuant: 'per-tensor', noProgress: true, verbose: false, report: undefined }),
    ['--output', 'm.pt', '--calib-limit', '64', '--weight-quant', 'per-tensor', '--no-progress'],
  );
  assert.equal(qh.defaultReportPath('out/course_int8.pt'), 'out/course_int8.json');
  assert.equal(qh.defaultReportPath('model'), 'model.json');
});

test('findPython: the repository .venv, or QHELPERS_PYTHON, or a clear error', () => {
  assert.equal(qh.findPython({}), path.join(qh.REPO_DIR, '.venv', 'bin', 'python'));
  assert.equal(qh.findPython({ QHELPERS_PYTHON: process.execPath }), process.execPath);
  assert.throws(() => qh.findPython({ QHELPERS_PYTHON: '/no/such/python' }), (err) => {
    assert.equal(err.code, 'ENOPYTHON');
    assert.match(err.message, /Python not found or not executable: QHELPERS_PYTHON=\/no\/such\/python/);
    return true;
  });
});

test('the command streams the tool output and passes exit codes 0 and 2 through', async () => {
  const ok = await runCommand(['tensor', '--values', '0.5,-1', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(JSON.parse(ok.stdout).codes, [127, -128]);
  const usage = await runCommand(['tensor', '--bits', '1']);
  assert.equal(usage.code, 2);
  assert.equal(usage.stderr, 'qhelpers tensor: error: bits must be from 2 to 16, got 1\n');
});

test('missing Python or missing package: exit 1 with one clear line', async () => {
  const noPython = await runCommand(['tensor'], { env: { ...process.env, QHELPERS_PYTHON: '/no/such/python' } });
  assert.equal(noPython.code, 1);
  assert.match(noPython.stderr, /^qhelpers\.js: error: Python not found or not executable/);
  assert.equal(noPython.stderr.trim().split('\n').length, 1);

  // A real Python that cannot see the package: the venv's interpreter without site-packages.
  const dir = tmpdir();
  const fake = path.join(dir, 'python');
  fs.writeFileSync(fake, `#!/bin/sh\nexec "${qh.findPython({})}" -S -I "$@"\n`, { mode: 0o755 });
  const noPackage = await runCommand(['tensor'], { env: { ...process.env, QHELPERS_PYTHON: fake } });
  assert.equal(noPackage.code, 1);
  assert.match(noPackage.stderr, /^qhelpers\.js: error: the qhelpers package is not installed for .*python/);
  await assert.rejects(qh.run(['tensor'], { env: { ...process.env, QHELPERS_PYTHON: fake } }), { code: 'ENOPACKAGE' });
});

test('quantize() resolves with the JSON report of the files it wrote', async () => {
  const dir = tmpdir();
  const output = path.join(dir, 'course_int8.pt');
  let stderr = '';
  const report = await qh.quantize(
    { output, calibLimit: 64, batchSize: 64, evalLimit: 200, latencySeconds: 0.05 },
    { quiet: true, onStderr: (text) => { stderr += text; } },
  );
  assert.match(stderr, /calibrating/); // the progress bar was streamed
  assert.deepEqual(fs.readdirSync(dir).sort(), ['course_int8.json', 'course_int8.pt']);
  assert.deepEqual(report, JSON.parse(fs.readFileSync(path.join(dir, 'course_int8.json'), 'utf8')));
  assert.equal(report.arch, 'course');
  assert.equal(report.size_bytes.int8_torchscript, fs.statSync(output).size);
  assert.equal(report.accuracy.images, 200);
  assert.ok(report.accuracy.int8_percent > 90 && Math.abs(report.accuracy.drop_points) <= 2, JSON.stringify(report.accuracy));
  assert.ok(report.latency.int8_ms > 0);
});

test("quantize({ target: 'xnnpack' }) passes the target through and resolves with the .pte's report", async () => {
  assert.deepEqual(qh.toArgs({ output: 'm.pte', target: 'xnnpack' }), ['--output', 'm.pte', '--target', 'xnnpack']);
  const dir = tmpdir();
  const output = path.join(dir, 'course_int8.pte');
  const report = await qh.quantize(
    { output, target: 'xnnpack', calibLimit: 32, batchSize: 32, evalLimit: 100, latencySeconds: 0, noProgress: true },
    { quiet: true },
  );
  assert.deepEqual(fs.readdirSync(dir).sort(), ['course_int8.json', 'course_int8.pte']);
  assert.equal(report.target, 'xnnpack');
  assert.equal(report.engine, 'xnnpack');
  assert.equal(report.size_bytes.int8_pte, fs.statSync(output).size);
  assert.equal(fs.readFileSync(output).subarray(4, 8).toString(), 'ET12'); // ExecuTorch's file identifier
  assert.ok(report.delegation.delegated_nodes > 0);
  assert.ok(report.accuracy.int8_percent > 90, JSON.stringify(report.accuracy));
  // a wrong name for the target is the CLI's usage error, passed through as exit code 2
  await assert.rejects(qh.quantize({ output: path.join(dir, 'm.pt'), target: 'xnnpack' }, { quiet: true }), { exitCode: 2 });
});

test('quantize() rejects with the exit code of a failed run and writes nothing', async () => {
  const dir = tmpdir();
  const missing = path.join(dir, 'missing.pt');
  await assert.rejects(
    qh.quantize({ output: path.join(dir, 'm.pt'), checkpoint: missing, latencySeconds: 0 }, { quiet: true }),
    (err) => {
      assert.equal(err.name, 'QhelpersError');
      assert.equal(err.exitCode, 1);
      return true;
    },
  );
  assert.deepEqual(fs.readdirSync(dir), []);
  await assert.rejects(qh.quantize({}), { exitCode: 2 });
});

test('SIGTERM to the command reaches the tool: exit 143, no output file', async () => {
  const dir = tmpdir();
  let sent = false;
  const result = await runCommand(
    ['quantize', '-o', path.join(dir, 'm.pt'), '--eval', 'none', '--latency-seconds', '60', ...QUICK],
    {
      onStdout: (text, child) => {
        if (!sent && text.includes('measuring latency')) {
          sent = true;
          setTimeout(() => child.kill('SIGTERM'), 300);
        }
      },
    },
  );
  assert.ok(sent, result.stdout + result.stderr);
  assert.equal(result.code, 143, result.stderr);
  assert.match(result.stderr, /qhelpers quantize: error: terminated \(no partial output files are left\)/);
  assert.deepEqual(fs.readdirSync(dir), []);
});
