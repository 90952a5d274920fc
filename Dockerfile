# syntax=docker/dockerfile:1.7
#
# token-handler: runs the TypeScript sources directly with Node 24's type stripping (`node src/main.ts`),
# exactly as `npm start` and the tests do, so there is no build step and no dist/ to drift from src/.
#
#   docker build -t token-handler .
#   docker build --target check .        # type-check and lint (npm run lint) inside the build; the tests
#                                         # need PostgreSQL, Redis and Chromium: run them with .ci/run
#   docker run --rm -p 9080:9080 --env-file token-handler.env token-handler
#
# See docs/deployment.md.

ARG NODE_VERSION=24

# ---- prod-deps: production dependencies only ----------------------------------------------------------
# better-sqlite3 is a native addon: its install script fetches a prebuilt binary and falls back to
# compiling, hence the toolchain here and only here (the final image copies the result).
FROM node:${NODE_VERSION}-slim AS prod-deps
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --no-audit --no-fund

# ---- check: the full toolchain; `docker build --target check .` type-checks and lints (no tests) -------
FROM prod-deps AS check
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY . .
RUN npm run lint

# ---- runtime -----------------------------------------------------------------------------------------
FROM node:${NODE_VERSION}-slim AS runtime
# Secure defaults: production mode refuses default secrets, http issuers and insecure cookies
# (docker-compose.yml turns it off for local trials).
ENV NODE_ENV=production \
    IS_PRODUCTION=true \
    LISTEN_ADDR=:9080 \
    DB_PATH=/data/token-handler.db
WORKDIR /app

COPY --from=prod-deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json package-lock.json ./
COPY --chown=root:root bin ./bin
COPY --chown=root:root src ./src

# The SQLite default store needs a writable directory; PostgreSQL/Redis deployments ignore it.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]

# The code is owned by root and read-only to the service user.
USER node

EXPOSE 9080
# Liveness only (no dependency checks): Docker restarts a wedged process. Reads LISTEN_ADDR and TLS_CERT,
# so configure the container through the environment. Kubernetes uses its own probes (docs/deployment.md).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "src/ops/healthcheck.ts"]

# Node runs as PID 1 and handles SIGTERM itself (src/main.ts: stop accepting, finish in-flight requests,
# close the store, exit 0). Give it more than its 25 s grace: `docker stop -t 30`, terminationGracePeriodSeconds >= 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "src/main.ts"]
CMD []
