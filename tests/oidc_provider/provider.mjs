// A real OpenID provider for dmp's tests: oidc-provider (an OpenID-certified implementation) on
// loopback, configured from a JSON file as Pro Santé Connect or FranceConnect would be (their
// scopes, claims and acr values). Only the pages where a person types their login are ours:
// a test (or a browser) types the name of one of the configured accounts.
//
// For the relying party's negative tests, the harness can alter the next ID token it issues
// (POST /__harness/tamper): other claims (aud, nonce...) signed with the provider's own key, or
// the same claims signed with a key the provider never published. Nothing else is changed.
//
// Usage: node provider.mjs CONFIG.json   (prints "ready <issuer>" once listening)
import fs from 'node:fs';
import http from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const issuer = config.issuer;
const { port } = new URL(issuer);

const own = await jose.generateKeyPair('RS256', { extractable: true });
const foreign = await jose.generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await jose.exportJWK(own.privateKey)), kid: 'op-key', use: 'sig', alg: 'RS256' };

let tamper = null; // what to change in the next ID token

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">
<title>${escape(title)}</title></head><body><main><h1>${escape(title)}</h1>${body}</main></body></html>`;

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [jwk] },
  scopes: Object.keys(config.claims),
  claims: config.claims,
  acrValues: config.acrValues,
  cookies: { keys: ['dmp-test-provider-cookies'] },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Déconnexion', `${form}<button type="submit" form="op.logoutForm"
          value="yes" name="logout">Se déconnecter</button>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Déconnecté', '<p>Vous êtes déconnecté.</p>');
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = config.accounts[id];
    if (!account) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...account.claims }) };
  },
  ttl: {
    AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600,
    Grant: 3600,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Erreur du fournisseur', `<p id="error">${escape(out.error)}:
      ${escape(out.error_description || '')}</p>`);
  },
});

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST' && tamper && ctx.body?.id_token) {
    const claims = { ...jose.decodeJwt(ctx.body.id_token), ...(tamper.claims || {}) };
    const key = tamper.foreignKey ? foreign.privateKey : own.privateKey;
    ctx.body.id_token = await new jose.SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: 'op-key', typ: 'JWT' })
      .sign(key);
    tamper = null;
  }
});

const body = (req) => new Promise((resolve, reject) => {
  let data = '';
  req.on('data', (chunk) => { data += chunk; });
  req.on('end', () => resolve(data));
  req.on('error', reject);
});

async function interaction(req, res, uid, url) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'POST' && url.pathname.endsWith('/login')) {
    const login = new URLSearchParams(await body(req)).get('login') || '';
    const account = config.accounts[login];
    if (!account) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginForm(uid, 'compte inconnu'));
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: login, acr: account.acr, amr: account.amr },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (details.prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(loginForm(uid, ''));
    return;
  }
  // Consent: what the relying party asked for is granted (the providers this stands for
  // consent once, outside the relying party's concern).
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } },
    { mergeWithLastSubmission: true });
}

function loginForm(uid, error) {
  return page(config.title || 'Fournisseur d\'identité', `${error ? `<p role="alert">${escape(error)}</p>` : ''}
    <form method="post" action="/interaction/${escape(uid)}/login">
      <label for="login">Identifiant</label>
      <input id="login" name="login" autocomplete="off">
      <button type="submit">Valider</button>
    </form>`);
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname === '/__harness/tamper' && req.method === 'POST') {
      tamper = JSON.parse(await body(req));
      res.writeHead(204).end();
      return;
    }
    const match = url.pathname.match(/^\/interaction\/([\w-]+)(\/login)?$/);
    if (match) {
      await interaction(req, res, match[1], url);
      return;
    }
    callback(req, res);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  }
});
server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer}\n`);
});
