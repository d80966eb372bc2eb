// The SMART on FHIR EHR launch of the stand-in EHR (SMART App Launch 2.x), for development
// and tests: the EHR's launch page (/ehr), launch ids kept in memory, the portal's SMART
// client and what the authorization server adds for it: `launch` and `aud` as extra
// authorization parameters, the launch's patient in the token response.
//
// Kept out of server.mjs so that file only wires it in (marked "SMART" there).
//
// Environment:
//   IDP_SMART_CLIENT_ID   the portal's SMART client (default pjd-portal-smart)
//   IDP_SMART_FHIR_BASE   the EHR's FHIR base, the launch's `iss` (e.g. http://127.0.0.1:8103/fhir/R4);
//                         without it /ehr says SMART is not set up and no launch can be made
//   IDP_SMART_LAUNCH_TTL  seconds a launch id lives (default 300)
import { randomBytes } from 'node:crypto';

import { errors } from 'oidc-provider';

// SMART's scopes, as oidc-provider OIDC scopes (so a grant records them and the token
// response echoes them); only fhirUser stands for a claim.
const SMART_SCOPES = ['launch', 'launch/patient', 'fhirUser', 'patient/Patient.read', 'patient/Patient.rs'];
// The HelseID identity scopes the portal asks for beside SMART's: the ID token must name
// the clinician (pid) so the portal can check it is the person logged in there.
const HELSEID_IDENTITY_SCOPES = [
  'openid', 'profile', 'helseid://scopes/identity/pid', 'helseid://scopes/identity/security_level',
  'helseid://scopes/identity/assurance_level', 'helseid://scopes/hpr/hpr_number',
];
const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const MAX_LAUNCHES = 1000;

export function createSmart({ env, rpBases, clientJwks, page, esc }) {
  const clientId = env.IDP_SMART_CLIENT_ID || 'pjd-portal-smart';
  const fhirBase = (env.IDP_SMART_FHIR_BASE || '').replace(/\/+$/, '');
  const ttlSeconds = Number(env.IDP_SMART_LAUNCH_TTL || 300);
  const launches = new Map(); // launch id -> { patient, iss, expiresAt }
  const codePatients = new Map(); // authorization code jti -> patient (until redeemed or expired)

  const client = {
    client_id: clientId,
    client_name: 'Pasientjournaldeling (SMART-app)',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: clientJwks, // the portal's own client key, as for pjd-portal
    grant_types: ['authorization_code'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
    redirect_uris: rpBases.map((b) => `${b}/smart/callback/`),
    scope: [...HELSEID_IDENTITY_SCOPES, ...SMART_SCOPES].join(' '),
    // An EHR launch is a plain redirect to /auth (SMART does not use PAR).
    require_pushed_authorization_requests: false,
  };

  function liveLaunch(id) {
    const launch = typeof id === 'string' ? launches.get(id) : undefined;
    if (!launch) return undefined;
    if (launch.expiresAt < Date.now()) {
      launches.delete(id);
      return undefined;
    }
    return launch;
  }

  function createLaunch(patient) {
    if (!fhirBase) throw new Error('IDP_SMART_FHIR_BASE is not set');
    if (typeof patient !== 'string' || !FHIR_ID.test(patient)) throw new TypeError('patient must be a FHIR logical id');
    for (const [id, launch] of launches) if (launch.expiresAt < Date.now()) launches.delete(id);
    while (launches.size >= MAX_LAUNCHES) launches.delete(launches.keys().next().value);
    const id = randomBytes(24).toString('base64url');
    launches.set(id, { patient, iss: fhirBase, expiresAt: Date.now() + ttlSeconds * 1000 });
    return id;
  }

  // Authorization parameters for the SMART client: `launch` must name a live launch and
  // `aud` must be that launch's FHIR base (SMART App Launch 2.x, EHR launch). Other
  // clients' requests are left as they are (with `aud` allowed as a parameter, the portal
  // login's pushed request arrives with an `aud` of its own), and get no launch context.
  const extraParams = {
    async launch(ctx, value, forClient) {
      if (forClient?.clientId !== clientId) return;
      if (!liveLaunch(value)) throw new errors.InvalidRequest('launch is unknown or expired');
    },
    async aud(ctx, value, forClient) {
      if (forClient?.clientId !== clientId) return;
      const launch = liveLaunch(ctx.oidc.params.launch);
      if (!launch || value !== launch.iss) throw new errors.InvalidRequest('aud is not the launch\'s FHIR server');
    },
  };

  // Koa middleware around oidc-provider's routes: when /auth issues a code for a launch,
  // the code remembers the launch's patient; the token response for that code carries it.
  async function tokenContext(ctx, next) {
    await next();
    const oidc = ctx.oidc;
    if (!oidc || oidc.client?.clientId !== clientId) return;
    const code = oidc.entities?.AuthorizationCode;
    if (oidc.route === 'authorization' || oidc.route === 'resume') {
      const launch = liveLaunch(oidc.params?.launch);
      if (code && launch) {
        codePatients.set(code.jti, { patient: launch.patient, expiresAt: Date.now() + 120_000 });
        launches.delete(oidc.params.launch); // one launch, one authorization
      }
      return;
    }
    if (oidc.route === 'token' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object' && code) {
      const context = codePatients.get(code.jti);
      codePatients.delete(code.jti);
      if (context && context.expiresAt >= Date.now()) {
        ctx.body = { ...ctx.body, patient: context.patient, need_patient_banner: true };
      }
    }
  }

  // --- the EHR's launch page and launch API ---

  async function fhirPatients() {
    if (!fhirBase) return [];
    try {
      const answer = await fetch(`${fhirBase}/Patient?_count=50`, {
        headers: { accept: 'application/fhir+json' }, signal: AbortSignal.timeout(3000),
      });
      if (!answer.ok) return [];
      const bundle = await answer.json();
      return (bundle.entry ?? []).map((e) => e.resource).filter((r) => r?.resourceType === 'Patient').map((r) => {
        const name = r.name?.[0];
        const text = name ? [...(name.given ?? []), name.family].filter(Boolean).join(' ') : '';
        return { id: r.id, name: text || '(uten navn)', birthDate: r.birthDate || '' };
      });
    } catch {
      return [];
    }
  }

  function launchPage(patients, { error } = {}) {
    const portals = rpBases.map((b, i) => `<option value="${i}">${esc(b)}</option>`).join('');
    const rows = patients.map((p) => `
      <tr><td>${esc(p.name)}</td><td>${esc(p.birthDate)}</td><td><code>${esc(p.id)}</code></td>
        <td><button type="submit" name="patient" value="${esc(p.id)}" aria-label="Start PJD for ${esc(p.name)}">Start PJD</button></td></tr>`).join('');
    return page('EPJ (testmiljø) – SMART-start', `
<main>
<h1>EPJ (testmiljø)</h1>
<p class="banner">En testside som spiller en EPJ som starter SMART-apper. Kun syntetiske pasienter.</p>
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/ehr">
  <label for="portal">Portal</label>
  <select id="portal" name="portal">${portals}</select>
  ${patients.length ? `
  <table>
    <caption>Pasienter i EPJ-ens FHIR-tjener</caption>
    <thead><tr><th scope="col">Navn</th><th scope="col">Født</th><th scope="col">FHIR-id</th><th scope="col">Start</th></tr></thead>
    <tbody>${rows}
    </tbody>
  </table>` : '<p>Fant ingen pasienter i FHIR-tjeneren.</p>'}
  <label for="patient-id">Eller skriv pasientens FHIR-id</label>
  <input id="patient-id" name="patient_id" type="text" autocomplete="off">
  <div class="actions"><button type="submit">Start PJD med FHIR-id</button></div>
</form>
</main>`);
  }

  async function readBody(req, limit = 16 * 1024) {
    const chunks = [];
    let size = 0;
    for await (const chunk of req) {
      size += chunk.length;
      if (size > limit) throw new Error('request body too large');
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  function sendJson(res, status, body) {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify(body));
  }

  function sendPage(res, status, html) {
    res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store', 'X-Frame-Options': 'DENY' });
    res.end(html);
  }

  // Handles /ehr and /ehr/launches; returns false for any other path.
  async function handle(req, res, path) {
    if (path !== '/ehr' && path !== '/ehr/launches') return false;
    if (!fhirBase) {
      sendPage(res, 503, page('EPJ (testmiljø)', '<main><h1>EPJ (testmiljø)</h1><p class="error">SMART-start er ikke satt opp (IDP_SMART_FHIR_BASE).</p></main>'));
      return true;
    }
    if (path === '/ehr/launches') {
      if (req.method !== 'POST') { res.writeHead(405, { Allow: 'POST' }).end(); return true; }
      let body;
      try { body = JSON.parse(await readBody(req)); } catch { sendJson(res, 400, { error: 'bad json' }); return true; }
      try {
        sendJson(res, 201, { launch: createLaunch(body?.patient), iss: fhirBase, expires_in: ttlSeconds });
      } catch (err) {
        sendJson(res, 400, { error: err.message });
      }
      return true;
    }
    if (req.method === 'GET') {
      sendPage(res, 200, launchPage(await fhirPatients()));
      return true;
    }
    if (req.method !== 'POST') { res.writeHead(405, { Allow: 'GET, POST' }).end(); return true; }
    const form = new URLSearchParams(await readBody(req));
    const portal = rpBases[Number(form.get('portal') || 0)];
    const patient = (form.get('patient') || form.get('patient_id') || '').trim();
    if (!portal || !FHIR_ID.test(patient)) {
      sendPage(res, 400, launchPage(await fhirPatients(), { error: 'Velg en pasient (FHIR-id: bokstaver, tall, - og .).' }));
      return true;
    }
    const launch = createLaunch(patient);
    const target = `${portal}/smart/launch?${new URLSearchParams({ iss: fhirBase, launch })}`;
    res.writeHead(303, { Location: target, 'Cache-Control': 'no-store' }).end();
    return true;
  }

  return {
    client,
    clientId,
    scopes: SMART_SCOPES,
    claims: Object.fromEntries(SMART_SCOPES.map((s) => [s, s === 'fhirUser' ? ['fhirUser'] : []])),
    extraParams,
    tokenContext,
    handle,
  };
}
