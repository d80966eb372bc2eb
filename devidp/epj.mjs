// The EPJ side of the dev identity provider (docs/epj.md): an EPJ client that gets
// DPoP-bound JWT access tokens for the portal's API with the trust framework's attest
// (tillitsrammeverk) in `authorization_details`, as HelseID issues them, and a test EPJ
// page (GET /epj) that performs the "launch from the EPJ" against the portal.
//
// server.mjs imports this module; everything the EPJ adds to oidc-provider's
// configuration comes from `epjConfiguration()` and `epjClient()` here.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

import {
  calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT,
} from 'jose';
import { errors } from 'oidc-provider';

export const ATTEST_TYPE = 'nhn:tillitsrammeverk:parameters';
const ACCESS_TOKEN_TTL = 300;
const HTTP_TIMEOUT_MS = 10_000;

// Code systems of the attest (docs/epj.md, "The attest").
const OID = {
  pid: 'urn:oid:2.16.578.1.12.4.1.4.1',
  hpr: 'urn:oid:2.16.578.1.12.4.1.4.4',
  authorization: 'urn:oid:2.16.578.1.12.4.1.1.9060',
  organisation: 'urn:oid:2.16.578.1.12.4.1.4.101',
  healthcareService: 'urn:oid:2.16.578.1.12.4.1.1.8655',
  purposeOfUse: 'urn:oid:2.16.840.1.113883.1.11.20448',
  purposeOfUseDetails: 'urn:oid:2.16.578.1.12.4.1.1.8671',
};

const PURPOSES = [
  ['TREAT', 'Behandling (TREAT)'],
  ['ETREAT', 'Akutt behandling (ETREAT)'],
  ['BTG', 'Nødtilgang, «break the glass» (BTG)'],
];

// ---------------------------------------------------------------------------
// Settings and the EPJ's key
// ---------------------------------------------------------------------------
export function epjSettings(env, here, rpBases) {
  return {
    clientId: env.IDP_EPJ_CLIENT_ID || 'pjd-test-epj',
    keyFile: env.IDP_EPJ_KEY_FILE ? resolve(env.IDP_EPJ_KEY_FILE) : resolve(here, '.epj-key.json'),
    audience: env.IDP_API_AUDIENCE || 'nhn:pjd-portal',
    scope: env.IDP_API_SCOPE || 'nhn:pjd-portal/api',
    portalBase: (env.IDP_PORTAL_BASE || rpBases[0]).replace(/\/+$/, ''),
    data: JSON.parse(readFileSync(resolve(here, 'epj-data.json'), 'utf8')),
  };
}

// The EPJ's private JWK (RSA or EC, with `kid` and `alg`): in HelseID the EPJ keeps it
// and registers the public part; here the provider generates it, as it does its own
// signing key, so that the test EPJ page and the tests can sign as the EPJ.
export async function loadEpjKey(file) {
  if (existsSync(file)) {
    let jwk;
    try {
      jwk = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`cannot read the EPJ key ${file}: ${err.message}`);
    }
    if (!['RSA', 'EC'].includes(jwk.kty) || !jwk.d || !jwk.kid || !jwk.alg) {
      throw new Error(`${file} is not a private RSA or EC JWK with kid and alg`);
    }
    return jwk;
  }
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.use = 'sig';
  jwk.alg = 'RS256';
  writeFileSync(file, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600 });
  console.log(`devidp: generated new EPJ client key ${jwk.kid} in ${file}`);
  return jwk;
}

function publicJwk({ d, p, q, dp, dq, qi, oth, k, ...pub }) {
  return pub;
}

// ---------------------------------------------------------------------------
// The client and the provider configuration
// ---------------------------------------------------------------------------
export function epjClient(settings, key) {
  return {
    client_id: settings.clientId,
    client_name: 'Test-EPJ (pasientjournalsystem)',
    token_endpoint_auth_method: 'private_key_jwt',
    jwks: { keys: [publicJwk(key)] },
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    dpop_bound_access_tokens: true, // as HelseID requires of API clients: no DPoP, no token
    authorization_details_types: [ATTEST_TYPE],
  };
}

const isEpj = (settings, client) => client?.clientId === settings.clientId;

// Where the attest is refused, as HelseID refuses it. The number of patients is the
// portal's to judge (docs/epj.md: `attest_patient_count`), so it is not checked here.
const REQUIRED_FIELDS = [
  ['practitioner', 'identifier', 'id'],
  ['practitioner', 'legal_entity', 'id'],
  ['practitioner', 'point_of_care', 'id'],
  ['care_relationship', 'purpose_of_use', 'code'],
];

function validateAttest(settings, detail, client) {
  const { InvalidAuthorizationDetails } = errors;
  if (!isEpj(settings, client)) {
    throw new InvalidAuthorizationDetails(`authorization details type '${ATTEST_TYPE}' is not allowed for this client`);
  }
  for (const path of REQUIRED_FIELDS) {
    const value = path.reduce((node, name) => (node && typeof node === 'object' ? node[name] : undefined), detail);
    if (typeof value !== 'string' || !value.trim()) {
      throw new InvalidAuthorizationDetails(`the attest lacks ${path.join('.')}`);
    }
  }
  if (detail.patients !== undefined
    && (!Array.isArray(detail.patients) || detail.patients.some((p) => !p || typeof p !== 'object'))) {
    throw new InvalidAuthorizationDetails('the attest\'s patients must be an array of objects');
  }
}

// The API as a resource server: JWT access tokens (RS256 with the provider's key, header
// typ at+jwt), for the EPJ client only. Anything else is not a resource here.
export function resourceServerInfo(settings, resource, client) {
  if (resource !== settings.audience || !isEpj(settings, client)) return undefined;
  return {
    audience: settings.audience,
    scope: settings.scope,
    accessTokenTTL: ACCESS_TOKEN_TTL,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

// The parts of oidc-provider's configuration that the EPJ needs; server.mjs merges them.
export function epjConfiguration(settings) {
  return {
    features: {
      resourceIndicators: {
        enabled: true,
        // The EPJ's token request may leave out `resource`: its one resource is the API.
        defaultResource(ctx, client, oneOf) {
          if (oneOf) return oneOf;
          return isEpj(settings, client) ? settings.audience : undefined;
        },
        getResourceServerInfo(ctx, resource, client) {
          const info = resourceServerInfo(settings, resource, client);
          if (!info) throw new errors.InvalidTarget();
          return info;
        },
      },
      // Off by default in oidc-provider; on here because the attest is carried this way.
      richAuthorizationRequests: {
        enabled: true,
        types: {
          [ATTEST_TYPE]: {
            validate: (ctx, detail, client) => validateAttest(settings, detail, client),
          },
        },
        // Only the EPJ may ask for the attest, and only with client credentials; its
        // token carries the attest as asked (oidc-provider calls this for the
        // client_credentials grant, and its JWT format writes `authorization_details`).
        authorizationDetailsForAccessToken(ctx, token, source) {
          if (source) return source.rar;
          return JSON.parse(ctx.oidc.params.authorization_details);
        },
        authorizationDetailsForGrantSource(ctx) {
          return JSON.parse(ctx.oidc.params.authorization_details);
        },
        authorizationDetailsForIntrospection(ctx, token) {
          return token.rar;
        },
      },
    },
    // HelseID's client claim for the organisation, here from the attest's legal entity.
    extraTokenClaims(ctx, token) {
      if (token.clientId !== settings.clientId || !Array.isArray(token.rar)) return undefined;
      const attest = token.rar.find((d) => d.type === ATTEST_TYPE);
      const orgnr = attest?.practitioner?.legal_entity?.id;
      return orgnr ? { 'helseid://claims/client/claims/orgnr_parent': orgnr } : undefined;
    },
    // HelseID's access tokens have `nbf` (the portal checks it); oidc-provider's JWT
    // format has none, so the documented JWT customizer adds it, for the EPJ's tokens.
    customizeJwt(ctx, token, jwt) {
      if (token.clientId === settings.clientId) jwt.payload.nbf = jwt.payload.iat;
    },
    dPoPSigningAlgValues: ['ES256', 'RS256', 'PS256'],
  };
}

// ---------------------------------------------------------------------------
// The attest for a test user
// ---------------------------------------------------------------------------
function organisation(settings, orgnr) {
  return { id: orgnr, name: settings.data.organisations[orgnr] || '', system: OID.organisation };
}

export function attestFor(settings, user, username, patients, { purpose = 'TREAT', reason = '', decisionRef } = {}) {
  const code = settings.data.user_authorization[username] || 'LE';
  return {
    type: ATTEST_TYPE,
    practitioner: {
      identifier: { id: user.pid, name: user.name, system: OID.pid },
      hpr_nr: { id: user.hpr, system: OID.hpr },
      authorization: { code, text: settings.data.authorizations[code] || '', system: OID.authorization },
      legal_entity: organisation(settings, user.orgnr_parent),
      point_of_care: organisation(settings, user.orgnr_child),
      department: { id: '', name: '' },
    },
    care_relationship: {
      healthcare_service: { code: 'S03', system: OID.healthcareService },
      purpose_of_use: { code: purpose, system: OID.purposeOfUse },
      purpose_of_use_details: { code: 'BEHANDLER', system: OID.purposeOfUseDetails },
      decision_ref: {
        id: decisionRef || `test-epj-${randomBytes(6).toString('hex')}`,
        user_selected: true,
        reason,
      },
    },
    patients: patients.map((id) => ({
      identifier: { id, system: OID.pid },
      point_of_care: { id: user.orgnr_child },
    })),
  };
}

// ---------------------------------------------------------------------------
// The EPJ as a client: token request and the call to the portal
// ---------------------------------------------------------------------------
const b64sha256 = (value) => createHash('sha256').update(value).digest('base64url');

async function clientAssertion(settings, key, tokenEndpoint) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ jti: randomUUID() })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(settings.clientId)
    .setSubject(settings.clientId)
    .setAudience(tokenEndpoint)
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 60)
    .sign(await importJWK(key, key.alg));
}

// One DPoP key per launch (RFC 9449): the token is bound to it, the call proves it.
async function dpopKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  return { privateKey, publicJwk: await exportJWK(publicKey) };
}

async function dpopProof(dpop, method, url, { accessToken, nonce } = {}) {
  const claims = { htm: method, htu: url, jti: randomUUID() };
  if (accessToken) claims.ath = b64sha256(accessToken);
  if (nonce) claims.nonce = nonce;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: dpop.publicJwk })
    .setIssuedAt()
    .sign(dpop.privateKey);
}

class LaunchError extends Error {}

async function fetchWithTimeout(url, options) {
  try {
    return await fetch(url, { ...options, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  } catch (err) {
    throw new LaunchError(`Fikk ikke kontakt med ${url}: ${err.cause?.code || err.message}`);
  }
}

async function epjToken(settings, key, tokenEndpoint, attest, dpop) {
  const body = () => new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: settings.clientId,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    resource: settings.audience,
    scope: settings.scope,
    authorization_details: JSON.stringify([attest]),
  });
  let nonce;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const form = body();
    form.set('client_assertion', await clientAssertion(settings, key, tokenEndpoint));
    const response = await fetchWithTimeout(tokenEndpoint, {
      method: 'POST',
      headers: { DPoP: await dpopProof(dpop, 'POST', tokenEndpoint, { nonce }) },
      body: form,
    });
    const answer = await response.json().catch(() => ({}));
    if (response.ok && answer.access_token) return answer.access_token;
    if (answer.error === 'use_dpop_nonce' && response.headers.get('dpop-nonce') && !nonce) {
      nonce = response.headers.get('dpop-nonce');
      continue;
    }
    throw new LaunchError(`HelseID (testmiljø) ga ingen token: ${answer.error || response.status}`
      + `${answer.error_description ? ` – ${answer.error_description}` : ''}`);
  }
  throw new LaunchError('HelseID (testmiljø) ga ingen token');
}

function diagnostics(answer, status) {
  const issues = Array.isArray(answer?.issue) ? answer.issue : [];
  const texts = issues.map((i) => i?.diagnostics || i?.details?.text || i?.code).filter(Boolean);
  return texts.length ? texts.join(' ') : `HTTP ${status}`;
}

// POST {portal}/api/launch with the token and a proof; one retry with the portal's nonce.
async function portalLaunch(settings, token, dpop, challenge) {
  const url = `${settings.portalBase}/api/launch`;
  let nonce;
  for (let attempt = 0; attempt < 2; attempt += 1) {
    const response = await fetchWithTimeout(url, {
      method: 'POST',
      headers: {
        Authorization: `DPoP ${token}`,
        DPoP: await dpopProof(dpop, 'POST', url, { accessToken: token, nonce }),
        'Content-Type': 'application/x-www-form-urlencoded',
        Accept: 'application/json',
      },
      body: new URLSearchParams({ ehr_code_challenge: challenge, ehr_code_challenge_method: 'S256' }),
    });
    const answer = await response.json().catch(() => undefined);
    const fresh = response.headers.get('dpop-nonce');
    if (response.status === 401 && !nonce && fresh
      && /error="use_dpop_nonce"/.test(response.headers.get('www-authenticate') || '')) {
      nonce = fresh;
      continue;
    }
    if (response.status === 201 && typeof answer?.code === 'string' && typeof answer?.start_url === 'string') {
      return answer;
    }
    throw new LaunchError(`Portalen avviste oppstarten (HTTP ${response.status}): ${diagnostics(answer, response.status)}`);
  }
  throw new LaunchError('Portalen krevde ny DPoP-nonce igjen');
}

// ---------------------------------------------------------------------------
// The test EPJ page (Norwegian bokmål)
// ---------------------------------------------------------------------------
function launchUsers(users) {
  return Object.entries(users).filter(([, u]) => u.hpr);
}

function epjPage(settings, users, { page, esc }) {
  const userOptions = launchUsers(users)
    .map(([name, u]) => `<option value="${esc(name)}">${esc(u.name)} (${esc(name)}, HPR ${esc(u.hpr)})</option>`)
    .join('');
  const patientOptions = settings.data.patients
    .map((p) => `<option value="${esc(p.id)}">${esc(p.id)} – ${esc(p.label)}</option>`).join('');
  const purposeOptions = PURPOSES.map(([code, text]) => `<option value="${esc(code)}">${esc(text)}</option>`).join('');
  return page('Test-EPJ – åpne pasient i PJD', `
<h1>Test-EPJ</h1>
<p class="banner">Et later-som-pasientjournalsystem for utvikling og test. Det henter et token med
attest fra HelseID (testmiljø) og åpner pasienten i portalen <code>${esc(settings.portalBase)}</code>.</p>
<form method="post" action="/epj/launch">
  <h2>Helsepersonell</h2>
  <label for="user">Bruker</label>
  <select id="user" name="user" required>${userOptions}</select>
  <h2>Pasient</h2>
  <label for="patient">Testpasient</label>
  <select id="patient" name="patient">${patientOptions}</select>
  <label for="patient_other">Annet fødselsnummer (overstyrer valget over)</label>
  <input id="patient_other" name="patient_other" type="text" inputmode="numeric" autocomplete="off" maxlength="11">
  <h2>Grunnlag</h2>
  <label for="purpose">Formål (purpose of use)</label>
  <select id="purpose" name="purpose">${purposeOptions}</select>
  <label for="reason">Begrunnelse (valgfri; minst 15 tegn ved nødtilgang)</label>
  <input id="reason" name="reason" type="text" maxlength="500">
  <details>
    <summary>Avansert: testscenario</summary>
    <label for="scenario">Attestens pasienter</label>
    <select id="scenario" name="scenario">
      <option value="one">Én pasient (vanlig)</option>
      <option value="none">Ingen pasient (portalen skal avvise)</option>
      <option value="two">To pasienter (portalen skal avvise)</option>
    </select>
  </details>
  <div class="actions"><button type="submit">Åpne i PJD</button></div>
</form>`);
}

function errorPage(message, { page, esc }) {
  return page('Feil – Test-EPJ', `
<h1>Test-EPJ</h1>
<p class="error" role="alert">${esc(message)}</p>
<p><a href="/epj">Tilbake til Test-EPJ</a></p>`);
}

// The browser's step into the portal: a form POST of code and verifier (no national id,
// no code in a URL), sent at once; the button is for a browser without JavaScript.
function startPage(start, verifier, { page, esc }) {
  return page('Åpner PJD – Test-EPJ', `
<h1>Åpner pasienten i PJD …</h1>
<form id="launch" method="post" action="${esc(start.start_url)}">
  <input type="hidden" name="code" value="${esc(start.code)}">
  <input type="hidden" name="code_verifier" value="${esc(verifier)}">
  <div class="actions"><button type="submit">Fortsett til PJD</button></div>
</form>
<script>document.getElementById('launch').submit();</script>`);
}

function chosenPatients(settings, form) {
  const chosen = (form.get('patient_other') || '').trim() || (form.get('patient') || '').trim();
  const scenario = form.get('scenario') || 'one';
  if (scenario === 'none') return [];
  if (scenario === 'two') {
    const other = settings.data.patients.map((p) => p.id).find((id) => id !== chosen);
    return [chosen, other];
  }
  return [chosen];
}

export function createEpjHandler({
  settings, key, users, tokenEndpoint, page, esc, sendHtml, readForm,
}) {
  const html = { page, esc };
  return async function handleEpj(req, res, path) {
    if (path !== '/epj' && path !== '/epj/launch') return false;
    if (path === '/epj') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { Allow: 'GET' }).end();
      } else {
        sendHtml(res, 200, epjPage(settings, users, html));
      }
      return true;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST' }).end();
      return true;
    }
    try {
      const form = await readForm(req);
      const username = form.get('user') || '';
      const user = Object.hasOwn(users, username) ? users[username] : undefined;
      if (!user?.hpr) {
        sendHtml(res, 400, errorPage('Velg en bruker med HPR-nummer.', html));
        return true;
      }
      const patients = chosenPatients(settings, form);
      if (patients.some((id) => !id)) {
        sendHtml(res, 400, errorPage('Velg en pasient.', html));
        return true;
      }
      const purpose = PURPOSES.some(([code]) => code === form.get('purpose')) ? form.get('purpose') : 'TREAT';
      const attest = attestFor(settings, user, username, patients, {
        purpose, reason: (form.get('reason') || '').trim(),
      });
      const dpop = await dpopKey();
      const token = await epjToken(settings, key, tokenEndpoint, attest, dpop);
      const verifier = randomBytes(32).toString('base64url'); // 43 characters
      const start = await portalLaunch(settings, token, dpop, b64sha256(verifier));
      sendHtml(res, 200, startPage(start, verifier, html));
    } catch (err) {
      if (!(err instanceof LaunchError)) console.error('devidp: EPJ launch error', err);
      const message = err instanceof LaunchError ? err.message : 'Intern feil i Test-EPJ.';
      if (!res.headersSent) sendHtml(res, 502, errorPage(message, html));
    }
    return true;
  };
}
