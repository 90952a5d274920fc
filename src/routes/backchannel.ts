/**
 * OpenID Connect Back-Channel Logout 1.0: POST {base}/clients/{clientId}/backchannel-logout with a form
 * body `logout_token=<JWT>`, sent by the IdP (server to server: no cookies, no CSRF token, and no tenant
 * header: the token's `iss` selects the tenant of a multi-tenant client). A valid token ends the sessions
 * it names in the store and in every instance's cache. 200 on success, 400 `invalid_request` otherwise,
 * always `Cache-Control: no-store`.
 */
import { hash } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { decodeJwt } from 'jose';
import type { AppContext } from '../context.ts';
import type { JwksCache } from '../oidc/jwks.ts';
import { hasCredentials } from '../oidc/registry.ts';
import { LogoutTokenError, validateLogoutToken, type LogoutClaims } from '../oidc/logoutToken.ts';
import { header } from '../http/request.ts';

type BackchannelRequest = { Params: { clientId: string }; Body: unknown };

const MAX_LOGOUT_TOKEN_LENGTH = 16 * 1024;

/** The store key recording a logout token's use: its issuer and jti, hashed (bounded, no separator games). */
function replayKey(claims: LogoutClaims): string {
  return hash('sha256', `logout-token\n${claims.iss}\n${claims.jti}`, 'hex');
}

export async function backchannelRoutes(app: FastifyInstance, opts: { ctx: AppContext; jwks: JwksCache }): Promise<void> {
  const { ctx, jwks } = opts;

  // This scope only: the IdP posts a form; nothing else of the API accepts one.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.post<BackchannelRequest>('/clients/:clientId/backchannel-logout', { bodyLimit: 64 * 1024 }, async (request, reply) => {
    const { clientId } = request.params;
    reply.header('cache-control', 'no-store');
    const refuse = (reason: string): FastifyReply => {
      request.log.warn({ clientId, reason }, 'back-channel logout refused');
      return reply.code(400).send({ error: 'invalid_request', error_description: reason });
    };
    const token = (request.body as { logout_token?: unknown } | undefined)?.logout_token;
    if (typeof token !== 'string' || token === '' || token.length > MAX_LOGOUT_TOKEN_LENGTH) return refuse('the form body must carry a logout_token');
    if (!ctx.registry.client(clientId)) return refuse(`no client "${clientId}" is configured`);

    // The (unverified) issuer picks the tenant; the signature check below is against that issuer's keys.
    let claimedIssuer: unknown;
    try {
      claimedIssuer = decodeJwt(token).iss;
    } catch {
      return refuse('the logout token is not a JWT');
    }
    const tenantHeader = header(request, ctx.config.tenantHeader);
    // The issuer as discovery spells it (Auth0's trailing slash), not as configured: that is what `iss` holds.
    const issuers = new Map<string | null, string>();
    let discoveryFailure: string | undefined;
    for (const v of ctx.registry.variants()) {
      if (v.id !== clientId || (tenantHeader !== undefined && v.tenant !== null && v.tenant !== tenantHeader)) continue;
      try {
        issuers.set(v.tenant, await ctx.registry.discoveredIssuer(clientId, v.tenant));
      } catch (err) {
        discoveryFailure = `the issuer cannot be reached (${(err as Error).message})`;
      }
    }
    const candidates = ctx.registry.variants().filter((v) => v.id === clientId && issuers.has(v.tenant) && issuers.get(v.tenant) === claimedIssuer);
    if (candidates.length === 0) return refuse(discoveryFailure ?? 'the logout token is not from the issuer of this client');

    let validated: { claims: LogoutClaims; tenant: string | null } | undefined;
    let failure = 'the logout token is invalid';
    for (let candidate of candidates) {
      if (!hasCredentials(candidate.client)) {
        // A registered client this instance has not used since another instance registered it: load it.
        await ctx.registry.configuration(clientId, candidate.tenant).catch(() => undefined);
        const client = ctx.registry.variant(clientId, candidate.tenant);
        if (client === undefined || !hasCredentials(client)) {
          failure = 'the client is not registered';
          continue;
        }
        candidate = { ...candidate, client };
      }
      try {
        const metadata = await ctx.registry.serverMetadata(clientId, candidate.tenant);
        if (metadata.jwks_uri === undefined) {
          failure = 'the issuer publishes no jwks_uri';
          continue;
        }
        const claims = await validateLogoutToken(token, { issuer: metadata.issuer, clientId: candidate.client.clientId, keys: jwks.get(metadata.jwks_uri) });
        validated = { claims, tenant: candidate.tenant };
        break;
      } catch (err) {
        failure = err instanceof LogoutTokenError ? err.message : `the issuer cannot be reached (${(err as Error).message})`;
      }
    }
    if (!validated) return refuse(failure);
    const { claims, tenant } = validated;

    // Recorded in the store, so every instance of a fleet refuses a replay, before anything is done: of two
    // instances receiving the same token at once, only one acts on it.
    const key = replayKey(claims);
    if (!(await ctx.store.recordTokenUse(key, claims.acceptableUntil, Date.now()))) return refuse('the logout token was already used (jti)');
    let ended: string[];
    try {
      ended = await endSessions(ctx, clientId, tenant, claims);
    } catch (err) {
      // Not done: an OP retrying after a store failure is not taken for a replay.
      await ctx.store.forgetTokenUse(key).catch(() => undefined);
      throw err;
    }
    await ctx.sessions.destroyMany(ended);
    ctx.metrics.logouts.inc({ client: clientId, kind: 'backchannel' });
    request.log.info({ clientId, tenant, sub: claims.sub, sid: claims.sid, sessions: ended.length }, 'back-channel logout');
    return reply.code(200).send();
  });
}

/**
 * Deletes the sessions a logout token names; returns their id hashes. With `sid`, the sessions of that OP
 * session at the issuer (the OP session is over for every client); with only `sub`, the user's sessions of
 * this client (and tenant) at the issuer: a logout token addresses one relying party.
 */
async function endSessions(ctx: AppContext, clientId: string, tenant: string | null, claims: LogoutClaims): Promise<string[]> {
  if (claims.sid !== undefined) return ctx.store.deleteBySid(claims.iss, claims.sid);
  const records = await ctx.store.listBySubject(claims.iss, claims.sub!);
  const deleted: string[] = [];
  for (const record of records) {
    if (record.clientId !== clientId || record.tenant !== tenant) continue;
    if (await ctx.store.delete(record.idHash)) deleted.push(record.idHash);
  }
  return deleted;
}
