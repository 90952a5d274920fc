/**
 * OpenID Connect Back-Channel Logout 1.0: POST {base}/clients/{clientId}/backchannel-logout with a form
 * body `logout_token=<JWT>`, sent by the IdP (server to server: no cookies, no CSRF token, and no tenant
 * header: the token's `iss` selects the tenant of a multi-tenant client). A valid token ends the sessions
 * it names in the store and in every instance's cache. 200 on success, 400 `invalid_request` otherwise,
 * always `Cache-Control: no-store`.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { decodeJwt } from 'jose';
import type { AppContext } from '../context.ts';
import type { JwksCache } from '../oidc/jwks.ts';
import { LOGOUT_TOKEN_MAX_AGE_SEC, LogoutTokenError, validateLogoutToken, type LogoutClaims } from '../oidc/logoutToken.ts';
import { TtlCache } from '../session/cache.ts';
import { header } from './requestInfo.ts';

type BackchannelRequest = { Params: { clientId: string }; Body: unknown };

const MAX_LOGOUT_TOKEN_LENGTH = 16 * 1024;
/** jti values seen, per instance: a replayed logout token is refused for as long as it could be accepted. */
const REPLAY_WINDOW_MS = (LOGOUT_TOKEN_MAX_AGE_SEC + 120) * 1000;

export async function backchannelRoutes(app: FastifyInstance, opts: { ctx: AppContext; jwks: JwksCache }): Promise<void> {
  const { ctx, jwks } = opts;
  const seen = new TtlCache<true>(REPLAY_WINDOW_MS, 100_000);

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
    const candidates = ctx.registry
      .variants()
      .filter((v) => v.id === clientId && v.client.issuer === claimedIssuer)
      .filter((v) => tenantHeader === undefined || v.tenant === null || v.tenant === tenantHeader);
    if (candidates.length === 0) return refuse('the logout token is not from the issuer of this client');

    let validated: { claims: LogoutClaims; tenant: string | null } | undefined;
    let failure = 'the logout token is invalid';
    for (let candidate of candidates) {
      if (candidate.client.clientSecret === undefined) {
        // A registered client this instance has not used since another instance registered it: load it.
        await ctx.registry.configuration(clientId, candidate.tenant).catch(() => undefined);
        const client = ctx.registry.variant(clientId, candidate.tenant);
        if (client?.clientSecret === undefined) {
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
        const claims = await validateLogoutToken(token, { issuer: candidate.client.issuer, clientId: candidate.client.clientId, keys: jwks.get(metadata.jwks_uri) });
        validated = { claims, tenant: candidate.tenant };
        break;
      } catch (err) {
        failure = err instanceof LogoutTokenError ? err.message : `the issuer cannot be reached (${(err as Error).message})`;
      }
    }
    if (!validated) return refuse(failure);
    const { claims, tenant } = validated;

    const replayKey = claims.jti === undefined ? undefined : `${claims.iss}\n${claims.jti}`;
    if (replayKey !== undefined && seen.get(replayKey, Date.now())) return refuse('the logout token was already used (jti)');

    const ended = await endSessions(ctx, clientId, tenant, claims);
    await ctx.sessions.destroyMany(ended);
    // Remembered only once it has worked: an OP retrying after a store failure is not taken for a replay.
    if (replayKey !== undefined) seen.set(replayKey, true, Date.now());
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
