import type { Config } from './config/types.ts';
import type { OriginResolver } from './http/origin.ts';
import type { OidcRegistry } from './oidc/registry.ts';
import type { CookiePolicy } from './session/cookiePolicy.ts';
import type { CookieSealer } from './session/cookieSealer.ts';
import type { SessionService } from './session/service.ts';
import type { SessionStore } from './store/types.ts';
import type { Metrics } from './metrics.ts';

/** Everything the routes need, constructed once in app.ts and passed down (no globals). */
export interface AppContext {
  config: Config;
  store: SessionStore;
  registry: OidcRegistry;
  sessions: SessionService;
  sealer: CookieSealer;
  cookies: CookiePolicy;
  metrics: Metrics;
  /** Our origin as the browser sees it (src/http/origin.ts). */
  origins: OriginResolver;
}
