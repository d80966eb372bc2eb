// Development/test OpenID Connect provider standing in for HelseID.
//
// NOT for production. Built on the npm package `oidc-provider` (9.x). Test identities
// come from ./users.json (shared with the Django side); every password is "test".
// See README.md for the environment variables.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import Provider, { errors } from 'oidc-provider';

import {
  createEpjHandler, epjClient, epjConfiguration, epjSettings, loadEpjKey,
} from './epj.mjs';
import { createSmart } from './smart.mjs'; // SMART

const HERE = dirname(fileURLToPath(import.meta.url));
const env = process.env;

// ---------------------------------------------------------------------------
// Configuration from the environment
// ---------------------------------------------------------------------------
const PORT = Number(env.IDP_PORT || 9000);
const HOST = env.IDP_HOST || '127.0.0.1';
const ISSUER = (env.IDP_ISSUER || `http://127.0.0.1:${PORT}`).replace(/\/+$/, '');
const CLIENT_ID = env.IDP_CLIENT_ID || 'pjd-portal';
const RP_BASES = (env.RP_BASES || 'http://127.0.0.1:8000')
  .split(',').map((s) => s.trim().replace(/\/+$/, '')).filter(Boolean);
// Paths given in the environment are relative to the current directory;
// the defaults are relative to devidp/.
const CLIENT_JWKS_FILE = env.IDP_CLIENT_JWKS
  ? resolve(env.IDP_CLIENT_JWKS) : resolve(HERE, '../var/oidc_client_jwks.json');
const SIGNING_KEY_FILE = env.IDP_SIGNING_KEY_FILE
  ? resolve(env.IDP_SIGNING_KEY_FILE) : resolve(HERE, '.signing-key.json');
const USERS_FILE = resolve(HERE, 'users.json');
const COOKIE_KEYS = (env.IDP_COOKIE_KEYS || 'devidp-cookie-key-not-secret-1')
  .split(',').map((s) => s.trim()).filter(Boolean);
const TEST_PASSWORD = 'test';

function fail(message) {
  console.error(`devidp: ${message}`);
  process.exit(1);
}

if (!Number.isInteger(PORT) || PORT <= 0 || PORT > 65535) fail(`invalid IDP_PORT: ${env.IDP_PORT}`);
if (RP_BASES.length === 0) fail('RP_BASES is empty');

// ---------------------------------------------------------------------------
// Test users (users.json) and their stable pseudonymous `sub`
// ---------------------------------------------------------------------------
const USERS = JSON.parse(readFileSync(USERS_FILE, 'utf8')).users;

function pseudonym(username) {
  return createHash('sha256').update(`${ISSUER}|${username}`).digest('base64url');
}

const USERNAME_BY_SUB = new Map(Object.keys(USERS).map((u) => [pseudonym(u), u]));

const ASSURANCE_LEVEL = { 4: 'high', 3: 'substantial' };

function claimsFor(username) {
  const u = USERS[username];
  const level = String(u.security_level);
  const claims = {
    sub: pseudonym(username),
    name: u.name,
    given_name: u.given_name,
    family_name: u.family_name,
    'helseid://claims/identity/pid': u.pid,
    'helseid://claims/identity/security_level': level,
    'helseid://claims/identity/assurance_level': ASSURANCE_LEVEL[level] || 'low',
    'helseid://claims/client/claims/orgnr_parent': u.orgnr_parent,
    'helseid://claims/client/claims/orgnr_child': u.orgnr_child,
  };
  if (u.hpr !== null && u.hpr !== undefined && u.hpr !== '') {
    claims['helseid://claims/hpr/hpr_number'] = u.hpr;
  }
  return claims;
}

function describe(u) {
  if (u.description) return u.description;
  const parts = [u.hpr ? `HPR ${u.hpr}` : 'uten HPR-nummer', `sikkerhetsnivå ${u.security_level}`];
  if (u.orgnr_parent) parts.push(`org. ${u.orgnr_parent}`);
  return parts.join(', ');
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------
if (!existsSync(CLIENT_JWKS_FILE)) {
  fail(`client JWKS file not found: ${CLIENT_JWKS_FILE}\n`
    + '  Create the portal\'s client key pair first (public JWKS there), or set IDP_CLIENT_JWKS.');
}
let clientJwks;
try {
  clientJwks = JSON.parse(readFileSync(CLIENT_JWKS_FILE, 'utf8'));
} catch (err) {
  fail(`cannot read client JWKS ${CLIENT_JWKS_FILE}: ${err.message}`);
}
if (!Array.isArray(clientJwks?.keys) || clientJwks.keys.length === 0) {
  fail(`client JWKS ${CLIENT_JWKS_FILE} has no "keys"`);
}
// Only ever publish/use public parts of the client's keys.
clientJwks = {
  keys: clientJwks.keys.map(({ d, p, q, dp, dq, qi, oth, k, ...pub }) => pub),
};

async function loadSigningKey() {
  if (existsSync(SIGNING_KEY_FILE)) {
    const jwk = JSON.parse(readFileSync(SIGNING_KEY_FILE, 'utf8'));
    if (jwk.kty !== 'RSA' || !jwk.d) fail(`${SIGNING_KEY_FILE} is not an RSA private JWK`);
    return jwk;
  }
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.use = 'sig';
  jwk.alg = 'RS256';
  writeFileSync(SIGNING_KEY_FILE, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600 });
  console.log(`devidp: generated new signing key ${jwk.kid} in ${SIGNING_KEY_FILE}`);
  return jwk;
}

const signingKey = await loadSigningKey();
if (!signingKey.kid) signingKey.kid = await calculateJwkThumbprint(signingKey);

// The EPJ client (epj.mjs, docs/epj.md): its settings, its key, its part of the configuration.
const EPJ = epjSettings(env, HERE, RP_BASES);
let epjKey;
try {
  epjKey = await loadEpjKey(EPJ.keyFile);
} catch (err) {
  fail(err.message);
}
const EPJ_CONFIGURATION = epjConfiguration(EPJ);

// ---------------------------------------------------------------------------
// HTML helpers (Norwegian bokmål)
// ---------------------------------------------------------------------------
function esc(value) {
  return String(value ?? '')
    .replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

const STYLE = `
  body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:46rem;padding:0 1rem;color:#1a1a1a}
  h1{font-size:1.6rem} .banner{background:#fff3cd;border:1px solid #e0c060;padding:.5rem .75rem}
  .error{background:#fde2e1;border:1px solid #c0392b;padding:.5rem .75rem;color:#8b1a12}
  label{display:block;margin-top:.75rem} input{font-size:1rem;padding:.35rem;width:18rem}
  .actions{margin-top:1rem} button{font-size:1rem;padding:.4rem 1rem;margin-right:.5rem}
  table{border-collapse:collapse;margin-top:1.5rem} th,td{border:1px solid #bbb;padding:.3rem .6rem;text-align:left}
`;

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="nb">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
</body>
</html>`;
}

function loginPage(uid, { error, username, clientId } = {}) {
  const rows = Object.entries(USERS).map(([name, u]) => `
      <tr><td><code>${esc(name)}</code></td><td>${esc(u.name)}</td><td>${esc(describe(u))}</td></tr>`).join('');
  return page('HelseID (testmiljø)', `
<h1>HelseID (testmiljø)</h1>
<p class="banner">Dette er en testtjeneste for utvikling. Alle brukere har passordet <code>test</code>.</p>
${clientId ? `<p>Innlogging til <strong>${esc(clientId)}</strong></p>` : ''}
${error ? `<p class="error" role="alert">${esc(error)}</p>` : ''}
<form method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="username">Brukernavn</label>
  <input id="username" name="username" type="text" value="${esc(username)}" required autofocus>
  <label for="password">Passord</label>
  <input id="password" name="password" type="password" required>
  <div class="actions">
    <button type="submit">Logg inn</button>
    <button type="submit" formaction="/interaction/${esc(uid)}/abort" formnovalidate>Avbryt</button>
  </div>
</form>
<table>
  <caption>Testbrukere</caption>
  <thead><tr><th>Brukernavn</th><th>Navn</th><th>Beskrivelse</th></tr></thead>
  <tbody>${rows}
  </tbody>
</table>`);
}

// ---------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------
const HELSEID_SCOPES = {
  openid: [
    'sub',
    // Organisation claims are tied to `openid` so they are always in the ID token;
    // the portal does not request an org scope (in HelseID they are client claims).
    'helseid://claims/client/claims/orgnr_parent',
    'helseid://claims/client/claims/orgnr_child',
  ],
  profile: ['name', 'given_name', 'family_name'],
  'helseid://scopes/identity/pid': ['helseid://claims/identity/pid'],
  'helseid://scopes/identity/security_level': ['helseid://claims/identity/security_level'],
  'helseid://scopes/identity/assurance_level': ['helseid://claims/identity/assurance_level'],
  'helseid://scopes/hpr/hpr_number': ['helseid://claims/hpr/hpr_number'],
};

// RP-initiated logout without the "are you sure" page, as HelseID does it: only with an
// id_token_hint that oidc-provider has validated (signature, issuer, audience) for our
// client, whose `sub` is the user signed in here. A hint for someone else is refused, as
// HelseID (Duende IdentityServer) refuses it; no hint gets the confirmation page.
function logoutNeedsNoConfirmation(ctx) {
  const hint = ctx.oidc.entities.IdTokenHint;
  if (!hint) return false;
  const { aud, sub } = hint.payload;
  const audiences = Array.isArray(aud) ? aud : [aud];
  if (ctx.oidc.client?.clientId !== CLIENT_ID || !audiences.includes(CLIENT_ID)) return false;
  if (sub !== ctx.oidc.session.accountId) {
    throw new errors.InvalidRequest('id_token_hint is not for the signed-in user');
  }
  return true;
}

// SMART on FHIR EHR launch (smart.mjs): the portal's SMART client, its scopes, `launch`/`aud`.
const SMART = createSmart({ env, rpBases: RP_BASES, clientJwks, page, esc }); // SMART

const configuration = {
  clients: [{
    client_id: CLIENT_ID,
    client_name: 'Pasientjournaldeling (portal)',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks: clientJwks,
    // client_credentials: the portal's own token for document sources (IHE MHD), as
    // HelseID issues it to a client with private_key_jwt.
    grant_types: ['authorization_code', 'client_credentials'],
    response_types: ['code'],
    id_token_signed_response_alg: 'RS256',
    redirect_uris: RP_BASES.map((b) => `${b}/oidc/callback/`),
    post_logout_redirect_uris: RP_BASES.flatMap((b) => [`${b}/`, `${b}/logget-ut/`]),
    require_pushed_authorization_requests: true, // as HelseID requires of new clients
  },
  epjClient(EPJ, epjKey), // the EPJ (epj.mjs): client credentials only
  SMART.client], // SMART
  jwks: { keys: [signingKey] },
  responseTypes: ['code'],
  clientAuthMethods: ['private_key_jwt'],
  enabledJWA: {
    clientAuthSigningAlgValues: ['RS256', 'PS256', 'ES256'],
    idTokenSigningAlgValues: ['RS256'],
    dPoPSigningAlgValues: EPJ_CONFIGURATION.dPoPSigningAlgValues,
  },
  extraTokenClaims: EPJ_CONFIGURATION.extraTokenClaims,
  formats: { customizers: { jwt: EPJ_CONFIGURATION.customizeJwt } },
  pkce: { required: () => true }, // oidc-provider 9 only supports S256
  scopes: [...Object.keys(HELSEID_SCOPES), ...SMART.scopes], // SMART
  claims: { ...HELSEID_SCOPES, ...SMART.claims }, // SMART
  extraParams: SMART.extraParams, // SMART
  conformIdTokenClaims: false, // HelseID puts the scope claims in the ID token
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    pushedAuthorizationRequests: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      // oidc-provider calls this only when the provider has a session and the request
      // passed its checks: an id_token_hint, if present, is signed by us for a known
      // client (its expiry is ignored, as the spec allows), and post_logout_redirect_uri
      // is registered for that client.
      async logoutSource(ctx, form) {
        if (logoutNeedsNoConfirmation(ctx)) {
          // As HelseID: a valid hint for the signed-in user ends the whole session at
          // once. The form still carries oidc-provider's xsrf secret; `logout=yes`
          // ends every client's session, not only this one's.
          ctx.body = page('Logger ut – HelseID (testmiljø)', `
<h1>HelseID (testmiljø)</h1>
<p>Du logges ut …</p>
${form.replace('</form>', '<input type="hidden" name="logout" value="yes"/></form>')}
<div class="actions">
  <button type="submit" form="op.logoutForm">Fortsett</button>
</div>
<script>document.getElementById('op.logoutForm').submit();</script>`);
          return;
        }
        ctx.body = page('Logg ut – HelseID (testmiljø)', `
<h1>HelseID (testmiljø)</h1>
<p>Vil du logge ut?</p>
${form}
<div class="actions">
  <button type="submit" form="op.logoutForm" name="logout" value="yes" autofocus>Logg ut</button>
  <button type="submit" form="op.logoutForm">Forbli innlogget</button>
</div>`);
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Logget ut – HelseID (testmiljø)', `
<h1>HelseID (testmiljø)</h1>
<p>Du er logget ut.</p>`);
      },
    },
    revocation: { enabled: false },
    introspection: { enabled: false },
    // EPJ: DPoP (on by default), resource indicators and rich authorization requests.
    ...EPJ_CONFIGURATION.features,
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(ctx, sub) {
    const username = USERNAME_BY_SUB.get(sub);
    if (!username) return undefined;
    return {
      accountId: sub,
      async claims() { return claimsFor(username); },
    };
  },
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Feil – HelseID (testmiljø)', `
<h1>HelseID (testmiljø)</h1>
<p class="error">Det oppstod en feil.</p>
${Object.entries(out).map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join('\n')}`);
  },
  cookies: { keys: COOKIE_KEYS },
  ttl: {
    AccessToken: 300,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
    PushedAuthorizationRequest: 60,
  },
};

const provider = new Provider(ISSUER, configuration);
provider.use(SMART.tokenContext); // SMART: the launch's patient in the token response
const oidcCallback = provider.callback();

// ---------------------------------------------------------------------------
// Custom interactions (login page + automatic consent)
// ---------------------------------------------------------------------------
async function readForm(req, limit = 16 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendHtml(res, status, html) {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
    'X-Frame-Options': 'DENY',
  });
  res.end(html);
}

async function grantConsent(req, res, details) {
  const { prompt: { details: missing = {} }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

const INTERACTION_RE = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?\/?$/;

async function handleInteraction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    sendHtml(res, 400, page('Feil – HelseID (testmiljø)', `
<h1>HelseID (testmiljø)</h1>
<p class="error">Innloggingen er utløpt eller ugyldig. Gå tilbake til portalen og prøv igjen.</p>`));
    return;
  }
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Feil', '<p class="error">Ugyldig innlogging.</p>'));
    return;
  }
  const promptName = details.prompt.name;

  if (req.method === 'GET' && !action) {
    if (promptName === 'login') {
      sendHtml(res, 200, loginPage(uid, {
        clientId: details.params.client_id,
        username: details.params.login_hint,
      }));
      return;
    }
    if (promptName === 'consent') {
      await grantConsent(req, res, details); // no consent screen in the test IdP
      return;
    }
    sendHtml(res, 400, page('Feil', `<p class="error">Ukjent steg: ${esc(promptName)}</p>`));
    return;
  }

  if (req.method !== 'POST' || !action) {
    res.writeHead(405, { Allow: 'GET, POST' }).end();
    return;
  }

  const form = await readForm(req);
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'Brukeren avbrøt innloggingen',
    }, { mergeWithLastSubmission: false });
    return;
  }

  // action === 'login'
  if (promptName !== 'login') {
    sendHtml(res, 400, page('Feil', '<p class="error">Uventet innlogging.</p>'));
    return;
  }
  const username = (form.get('username') || '').trim();
  const password = form.get('password') || '';
  if (!Object.hasOwn(USERS, username) || password !== TEST_PASSWORD) {
    sendHtml(res, 401, loginPage(uid, {
      error: 'Feil brukernavn eller passord',
      username,
      clientId: details.params.client_id,
    }));
    return;
  }
  await provider.interactionFinished(req, res, {
    login: { accountId: pseudonym(username), amr: ['pwd'] },
  }, { mergeWithLastSubmission: false });
}

// RP-initiated logout by form POST (OpenID Connect RP-Initiated Logout 1.0 § 2), so
// the id token (the clinician's national id is in it) is never in a browser URL.
// oidc-provider 9 takes POST there only with `enableHttpPostMethods`, which it allows
// only with SameSite=None session cookies; browsers drop those without Secure, and this
// provider speaks plain http. So the form is read here and handed to oidc-provider's GET
// route, which makes the same checks: the parameters stay inside this process. The
// session cookie (SameSite=Lax) comes along because the portal and this provider are
// the same site in development and tests (127.0.0.1, other port); with a portal on
// another host name the browser would not send it and the session would not end.
const END_SESSION_PATH = new URL(provider.urlFor('end_session')).pathname;

async function endSessionByPost(req, res) {
  const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    sendHtml(res, 400, page('Feil – HelseID (testmiljø)', '<p class="error">Utlogging må sendes som skjema.</p>'));
    return;
  }
  const form = await readForm(req);
  req.method = 'GET';
  req.url = `${END_SESSION_PATH}?${form}`;
  oidcCallback(req, res);
}

const handleEpj = createEpjHandler({
  settings: EPJ,
  key: epjKey,
  users: USERS,
  tokenEndpoint: provider.urlFor('token'),
  page,
  esc,
  sendHtml,
  readForm,
});

const server = createServer(async (req, res) => {
  const path = (req.url || '/').split('?')[0];
  if (await handleEpj(req, res, path)) return;
  if (req.method === 'POST' && path.replace(/\/+$/, '') === END_SESSION_PATH) {
    try {
      await endSessionByPost(req, res);
    } catch (err) {
      console.error('devidp: logout error', err.message);
      if (!res.headersSent) sendHtml(res, 400, page('Feil', '<p class="error">Ugyldig utlogging.</p>'));
    }
    return;
  }
  try { // SMART: the EHR's launch page
    if (await SMART.handle(req, res, path.replace(/\/+$/, ''))) return;
  } catch (err) {
    console.error('devidp: ehr error', err.message);
    if (!res.headersSent) sendHtml(res, 500, page('Feil', '<p class="error">Intern feil i EPJ-siden.</p>'));
    return;
  }
  const m = INTERACTION_RE.exec(path);
  if (!m) {
    oidcCallback(req, res);
    return;
  }
  try {
    await handleInteraction(req, res, m[1], m[2]);
  } catch (err) {
    console.error('devidp: interaction error', err);
    if (!res.headersSent) sendHtml(res, 500, page('Feil', '<p class="error">Intern feil i test-IdP.</p>'));
    else res.end();
  }
});

server.listen(PORT, HOST, () => {
  console.log(`devidp listening on ${ISSUER}`);
});

function shutdown(signal) {
  console.log(`devidp: ${signal}, stopping`);
  server.close();
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
