import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, formatConfigError } from '../../src/config/errors.ts';
import { parseEnvFile } from '../../src/config/files.ts';
import { OIDC, PRODUCTION_SECRETS, load, problemsOf, tempDir, writeFiles } from './helpers.ts';

describe('defaults', () => {
  it('loads with no input at all, with development warnings', () => {
    const dir = tempDir();
    const { config, warnings } = load([], { cwd: dir });
    expect(config).toMatchObject({
      isProduction: false,
      logLevel: 'info',
      listen: { host: '0.0.0.0', port: 9080 },
      basePath: '/token-handler/v1',
      trustProxy: false,
      cookie: { name: 'session', sameSite: 'lax', secure: 'auto' },
      csrf: { cookieName: 'XSRF-TOKEN', headerName: 'X-XSRF-TOKEN' },
      tenantHeader: 'X-ADSP-TENANT',
      session: { encSecrets: [], dbKeys: [], absoluteLifetimeSec: 8 * 3600, idleLifetimeSec: 3600, sweepIntervalSec: 60, sweepBatchSize: 1000, refreshSkewSec: 30 },
      db: { type: 'sqlite', path: join(dir, 'token-handler.db') },
      oidc: { timeoutMs: 10_000, allowInsecureIssuer: false },
      clients: [],
      targets: [],
      legacyRoutes: true,
      limits: { maxBodyBytes: 10 * 1024 * 1024, maxHeaderBytes: 16 * 1024 },
      rateLimit: { loginPerMinute: 60 },
    });
    expect(config.cookie.domain).toBeUndefined();
    expect(config.metricsListen).toBeUndefined();
    expect(config.session.authSecrets.map(String)).toEqual(['my-secret-key-CHANGE-ME-IN-PROD!']);
    expect(warnings).toContain('using the default SESSION_AUTH_SECRET: anyone can forge session cookies; set SESSION_AUTH_SECRET (refused in production)');
    expect(warnings.some((warning) => warning.startsWith('SESSION_ENC_SECRET is not set'))).toBe(true);
    expect(warnings.some((warning) => warning.startsWith('no OIDC client configured'))).toBe(true);
  });

  it('treats cookie_domain localhost and empty as host-only, and keeps a real domain', () => {
    expect(load(['--cookie_domain', 'localhost']).config.cookie.domain).toBeUndefined();
    expect(load(['--cookie_domain=']).config.cookie.domain).toBeUndefined();
    expect(load(['--cookie_domain', '.Example.COM']).config.cookie.domain).toBe('example.com');
  });

  it('builds the default client from the oidc flags with its defaults', () => {
    const [client] = load(OIDC).config.clients;
    expect(client).toEqual({
      id: 'default',
      issuer: 'https://idp.example.com',
      clientId: 'th',
      clientSecret: 'client-secret',
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      postLoginRedirectUrl: '/',
      allowedOrigins: [],
      extraAuthParams: {},
      disableVerifyHost: false,
    });
  });

  it('accepts the boolean spellings in the environment', () => {
    for (const [text, value] of [['1', true], ['yes', true], ['TRUE', true], ['0', false], ['no', false], ['false', false]] as const) {
      expect(load([], { env: { LEGACY_ROUTES: text } }).config.legacyRoutes).toBe(value);
    }
  });

  it('uses a go-token-handler DB_NAME as the SQLite file when DB_PATH is not set', () => {
    const dir = tempDir();
    expect(load([], { cwd: dir, env: { DB_NAME: 'sessions.sqlite' } }).config.db.path).toBe(join(dir, 'sessions.sqlite'));
    expect(load(['--db_path', ':memory:'], { cwd: dir, env: { DB_NAME: 'x' } }).config.db.path).toBe(':memory:');
  });

  it('accepts warning as warn', () => {
    expect(load(['--log_level', 'WARNING']).config.logLevel).toBe('warn');
  });
});

describe('precedence: flag > env > token_handler.env > config file > default', () => {
  const dir = tempDir();
  writeFiles(dir, {
    'token_handler.env': 'LOG_LEVEL=warn\nCOOKIE_NAME=from-env-file\nDB_TYPE=sqlite\n',
    'config.yaml': 'log_level: fatal\ncookie_name: from-config\ncsrf_cookie_name: FROM-CONFIG\ntenant_header: X-From-Config\n',
  });
  const run = (argv: string[], env: Record<string, string> = {}) => load(['--config', 'config.yaml', ...argv], { cwd: dir, env }).config;

  it('flag beats everything', () => {
    expect(run(['--log_level', 'debug'], { LOG_LEVEL: 'error' }).logLevel).toBe('debug');
  });
  it('env beats the env file and the config file', () => {
    expect(run([], { LOG_LEVEL: 'error' }).logLevel).toBe('error');
  });
  it('the env file beats the config file', () => {
    expect(run([]).logLevel).toBe('warn');
    expect(run([]).cookie.name).toBe('from-env-file');
  });
  it('the config file beats the default', () => {
    expect(run([]).csrf.cookieName).toBe('FROM-CONFIG');
    expect(run([]).tenantHeader).toBe('X-From-Config');
  });
  it('the default comes last', () => {
    expect(run([]).csrf.headerName).toBe('X-XSRF-TOKEN');
  });
  it('an empty environment variable counts as unset', () => {
    expect(run([], { LOG_LEVEL: '' }).logLevel).toBe('warn');
  });
  it('the env file may name the config file', () => {
    const other = tempDir();
    writeFiles(other, { 'token_handler.env': 'CONFIG_FILE=conf/th.json\n', 'conf/th.json': '{ "log_level": "trace", "trust_proxy": ["10.0.0.1", "10.1.0.0/16"] }' });
    const { config } = load([], { cwd: other });
    expect(config.logLevel).toBe('trace');
    expect(config.trustProxy).toEqual(['10.0.0.1', '10.1.0.0/16']);
  });
  it('resolves relative paths in the config file against its directory', () => {
    const other = tempDir();
    writeFiles(other, { 'conf/th.yaml': 'db_path: data/th.db\n' });
    expect(load(['--config', join(other, 'conf/th.yaml')]).config.db.path).toBe(join(other, 'conf/data/th.db'));
  });
});

describe('token_handler.env syntax', () => {
  it('parses comments, export, quotes and escapes', () => {
    const { entries, problems } = parseEnvFile(
      ['# comment', '', 'export A=1', 'B = two words # trailing comment', `C='single # not a comment'`, 'D="line\\nbreak \\"q\\""', 'E=', 'F=x#y'].join('\n'),
    );
    expect(problems).toEqual([]);
    expect(Object.fromEntries([...entries].map(([key, entry]) => [key, entry.value]))).toEqual({
      A: '1',
      B: 'two words',
      C: 'single # not a comment',
      D: 'line\nbreak "q"',
      E: '',
      F: 'x#y',
    });
  });

  it('reports bad lines by number without quoting them', () => {
    const { problems } = parseEnvFile('GOOD=1\nthis line holds hunter2hunter2hunter2\nQ="unterminated hunter2');
    expect(problems).toEqual(['token_handler.env line 2: expected KEY=VALUE', 'token_handler.env line 3 (Q): unterminated quote or text after the closing quote']);
  });

  it('warns about keys that are not settings', () => {
    const dir = writeFiles(tempDir(), { 'token_handler.env': 'LOG_LEVL=debug\n' });
    expect(load([], { cwd: dir }).warnings).toContain('token_handler.env line 1: LOG_LEVL is not a token-handler setting (ignored)');
  });
});

describe('errors', () => {
  it('explains --db_type mongo', () => {
    expect(problemsOf(['--db_type', 'mongo'])).toEqual(['--db_type "mongo" (from flag --db_type): must be one of sqlite, postgresql, redis']);
  });

  it('explains --listen_addr nonsense, naming the source', () => {
    expect(problemsOf([], { env: { LISTEN_ADDR: 'nonsense' } })).toEqual([
      '--listen_addr "nonsense" (from env LISTEN_ADDR): must be host:port, :port (all interfaces) or [ipv6]:port, e.g. ":9080" or "127.0.0.1:9080"',
    ]);
  });

  it('names the env file and config file as sources', () => {
    const dir = writeFiles(tempDir(), { 'token_handler.env': '\nDB_TYPE=mongo\n', 'c.yaml': 'log_level: loud\nfoo: 1\n' });
    expect(problemsOf(['--config', 'c.yaml'], { cwd: dir })).toEqual([
      'config file foo: unknown key; allowed: clients, targets, proxies or an option name such as log_level (see docs/configuration.md)',
      '--log_level "loud" (from config file log_level): must be one of fatal, error, warn, info, debug, trace, silent',
      '--db_type "mongo" (from token_handler.env DB_TYPE (line 2)): must be one of sqlite, postgresql, redis',
    ]);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf([
      '--db_type', 'mongo',
      '--listen_addr', 'nonsense',
      '--max_body_size', 'huge',
      '--session_idle_lifetime', 'forever',
      '--cookie_same_site', 'none',
      '--cookie_secure=false',
      '--allowed_origins', 'https://ok.example.com,https://bad.example.com/path',
      '--tls_cert', '/nonexistent/cert.pem',
      '--bogus',
    ]);
    expect(problems).toHaveLength(9);
    expect(problems).toContain('--db_type "mongo" (from flag --db_type): must be one of sqlite, postgresql, redis');
    expect(problems.join('\n')).toMatch(/--listen_addr "nonsense" \(from flag --listen_addr\)/);
    expect(problems.join('\n')).toMatch(/unknown option --bogus/);
    expect(problems.join('\n')).toMatch(/--max_body_size "huge".*must be a size/);
    expect(problems.join('\n')).toMatch(/--session_idle_lifetime "forever".*must be a duration/);
    expect(problems.join('\n')).toMatch(/item "https:\/\/bad.example.com\/path" must be an origin/);
    expect(problems.join('\n')).toMatch(/SameSite=None requires Secure/);
    expect(problems.join('\n')).toMatch(/--tls_cert and --tls_key go together/);
    expect(problems.join('\n')).toMatch(/--tls_cert "\/nonexistent\/cert.pem".*file not found/);
  });

  it('checks the database settings the chosen store needs', () => {
    expect(problemsOf(['--db_type', 'postgresql'])[0]).toMatch(/needs --db_url \(DATABASE_URL\), or --db_host and --db_name/);
    expect(problemsOf(['--db_type', 'redis'])[0]).toMatch(/needs --redis_url/);
    expect(load(['--db_type', 'postgres', '--db_host', 'db', '--db_name', 'th']).config.db.type).toBe('postgresql');
  });

  it("takes DB_HOST=host:port as go-token-handler's users wrote it (issue 21.3)", () => {
    const db = (argv: string[], env: Record<string, string> = {}) => {
      const { host, port } = load(['--db_type', 'postgresql', '--db_name', 'th', ...argv], { env }).config.db;
      return { host, port };
    };
    expect(db([], { DB_HOST: '127.0.0.1:5433' })).toEqual({ host: '127.0.0.1', port: 5433 });
    expect(db(['--db-host', 'db.internal:6543'])).toEqual({ host: 'db.internal', port: 6543 });
    expect(db(['--db_host', '[::1]:5433'])).toEqual({ host: '::1', port: 5433 });
    expect(db(['--db_host', '::1'])).toEqual({ host: '::1', port: undefined });
    expect(db(['--db_host', 'db', '--db_port', '5434'])).toEqual({ host: 'db', port: 5434 });
    expect(db(['--db_host', 'db:5434', '--db_port', '5434'])).toEqual({ host: 'db', port: 5434 });
    expect(problemsOf(['--db_type', 'postgresql', '--db_name', 'th', '--db_host', 'db:5433', '--db_port', '5434'])[0]).toMatch(/names port 5433, but --db_port is 5434/);
    expect(problemsOf(['--db_type', 'postgresql', '--db_name', 'th', '--db_host', 'db:70000'])[0]).toMatch(/the port must be 1-65535/);
  });

  it('refuses a metrics listener on the main address and an old key without a current one', () => {
    expect(problemsOf(['--metrics_listen_addr', '127.0.0.1:9080'])[0]).toMatch(/the same address as --listen_addr/);
    expect(problemsOf(['--session_old_db_key', 'o'.repeat(32)])[0]).toMatch(/set --session_db_key \(SESSION_DB_KEY\) too/);
  });

  it('refuses a forward-auth listener on the main or the metrics address (it answers with tokens)', () => {
    expect(problemsOf(['--forward_auth_listen_addr', '127.0.0.1:9080'])[0]).toMatch(/forward_auth_listen_addr.*the same address as --listen_addr/);
    expect(problemsOf(['--forward_auth_listen_addr', ':9080'])[0]).toMatch(/the same address as --listen_addr/);
    expect(problemsOf(['--metrics_listen_addr', ':9100', '--forward_auth_listen_addr', '127.0.0.1:9100'])[0]).toMatch(/the same address as --metrics_listen_addr/);
    expect(load(['--forward_auth_listen_addr', '127.0.0.1:4181']).config.forwardAuthListen).toEqual({ host: '127.0.0.1', port: 4181 });
    expect(problemsOf(['--forward_auth_allow', '10.0.0.0/8'])[0]).toMatch(/set --forward_auth_listen_addr/);
    expect(problemsOf(['--forward_auth_listen_addr', ':4181', '--forward_auth_allow', 'nginx.internal'])[0]).toMatch(/item "nginx.internal" must be an IP address/);
  });

  it('takes a Unix socket for the forward-auth listener: an absolute path, mode 0660 unless told, no peer allow-list', () => {
    expect(load(['--forward_auth_listen_addr', 'unix:/run/th/fa.sock']).config).toMatchObject({ forwardAuthListen: { path: '/run/th/fa.sock' }, forwardAuthSocketMode: 0o660 });
    expect(load(['--forward_auth_listen_addr', 'unix:///run/th/fa.sock', '--forward_auth_socket_mode', '600']).config).toMatchObject({ forwardAuthListen: { path: '/run/th/fa.sock' }, forwardAuthSocketMode: 0o600 });
    expect(load(['--forward_auth_listen_addr', '127.0.0.1:4181']).config.forwardAuthSocketMode).toBeUndefined();
    expect(problemsOf(['--forward_auth_listen_addr', 'unix:run/fa.sock'])[0]).toMatch(/forward_auth_listen_addr.*absolute path/);
    expect(problemsOf(['--forward_auth_listen_addr', 'unix:/run/th/'])[0]).toMatch(/must name a file/);
    expect(problemsOf(['--forward_auth_listen_addr', `unix:/${'a'.repeat(120)}`])[0]).toMatch(/at most 107 bytes/);
    expect(problemsOf(['--forward_auth_listen_addr', 'unix:/run/th/fa.sock', '--forward_auth_socket_mode', 'rw-rw----'])[0]).toMatch(/forward_auth_socket_mode.*octal file mode/);
    expect(problemsOf(['--forward_auth_listen_addr', 'unix:/run/th/fa.sock', '--forward_auth_allow', '127.0.0.1'])[0]).toMatch(/forward_auth_allow.*Unix socket.*no peer address/);
  });

  it('formats a ConfigError for main.ts', () => {
    const text = formatConfigError(new ConfigError(['a', 'b']));
    expect(text).toBe('token-handler: invalid configuration (2 problems):\n  - a\n  - b\n\nRun `token-handler --help` for the options, or see docs/configuration.md.');
    expect(formatConfigError(new Error('boom'))).toContain('boom');
  });

  it('reports YAML syntax errors by line, without quoting the file', () => {
    const dir = writeFiles(tempDir(), { 'c.yaml': 'log_level: info\nsession_auth_secret: "hunter2hunter2hunter2\n' });
    const problems = problemsOf(['--config', 'c.yaml'], { cwd: dir });
    expect(problems[0]).toMatch(/^config file ".*c\.yaml" line \d+ column \d+: invalid YAML\/JSON/);
    expect(problems.join('\n')).not.toContain('hunter2');
  });

  it('reports a missing config file', () => {
    expect(problemsOf(['--config', '/nonexistent/th.yaml'])).toEqual(['config file "/nonexistent/th.yaml": cannot be read (ENOENT)']);
  });
});

describe('production mode', () => {
  const production = ['--is_production', ...PRODUCTION_SECRETS, ...OIDC];

  it('starts with proper secrets and https URLs, forcing Secure cookies, without warnings about them', () => {
    const { config, warnings } = load([...production, '--cookie_secure', 'auto']);
    expect(config.isProduction).toBe(true);
    expect(config.cookie.secure).toBe(true);
    expect(warnings.filter((warning) => !warning.includes('command line'))).toEqual([]);
  });

  const refusals: [name: string, argv: string[], env: Record<string, string>, expected: RegExp][] = [
    ['the default auth secret', ['--is_production', '--session_enc_secret', 'E'.repeat(32), '--session_db_key', 'D'.repeat(32), ...OIDC], {}, /--session_auth_secret \(from default\): the built-in default is public/],
    ['an auth secret shorter than 32 bytes', [...production, '--session_auth_secret', 's'.repeat(20)], {}, /--session_auth_secret \(from flag --session_auth_secret\): must be at least 32 bytes in production, got 20/],
    ['an old auth secret shorter than 32 bytes', production, { SESSION_OLD_AUTH_SECRET: 's'.repeat(24) }, /--session_old_auth_secret \(from env SESSION_OLD_AUTH_SECRET\): must be at least 32 bytes/],
    ['a missing SESSION_ENC_SECRET', ['--is_production', '--session_auth_secret', 'A'.repeat(32), '--session_db_key', 'D'.repeat(32), ...OIDC], {}, /SESSION_ENC_SECRET\) is required in production/],
    ['a missing SESSION_DB_KEY', ['--is_production', '--session_auth_secret', 'A'.repeat(32), '--session_enc_secret', 'E'.repeat(32), ...OIDC], {}, /SESSION_DB_KEY\) is required in production/],
    ['an http issuer', [...production, '--oidc-issuer', 'http://idp.example.com'], {}, /--oidc_issuer "http:\/\/idp.example.com" \(from flag --oidc-issuer\): the issuer must be https in production/],
    ['an http redirect URL', [...production, '--oidc_redirect_url', 'http://app.example.com/cb'], {}, /--oidc_redirect_url "http:\/\/app.example.com\/cb" \(from flag --oidc_redirect_url\): must be https in production/],
    ['an http post-login URL', production, { OIDC_POST_LOGIN_REDIRECT_URL: 'http://app.example.com/' }, /--oidc_post_login_redirect_url .*\(from env OIDC_POST_LOGIN_REDIRECT_URL\): must be https in production/],
    ['an http post-logout URL', production, { OIDC_POST_LOGOUT_REDIRECT_URL: 'http://app.example.com/bye' }, /--oidc_post_logout_redirect_url .*: must be https in production/],
    ['cookie_secure=false', [...production, '--cookie_secure=false'], {}, /--cookie_secure "false" \(from flag --cookie_secure\): production requires Secure cookies/],
    ['oidc_allow_insecure_issuer', [...production, '--oidc_allow_insecure_issuer'], {}, /--oidc_allow_insecure_issuer "true" .*development only, refused in production/],
    ['an http public_url', [...production, '--public_url', 'http://app.example.com'], {}, /--public_url "http:\/\/app.example.com" .*must be https in production/],
  ];
  it.each(refusals)('refuses %s', (_name, argv, env, expected) => {
    const problems = problemsOf(argv, { env });
    expect(problems.join('\n')).toMatch(expected);
  });

  it('refuses disableVerifyHost on any client', () => {
    const dir = writeFiles(tempDir(), { 'c.yaml': 'clients:\n  - id: default\n    disableVerifyHost: true\n' });
    expect(problemsOf([...production, '--config', 'c.yaml'], { cwd: dir })).toEqual(['config file clients[0].disableVerifyHost: development only, refused in production']);
    expect(load([...OIDC, '--config', 'c.yaml'], { cwd: dir }).warnings).toContain(
      'client "default" has disableVerifyHost: the request host is not checked against its redirect URL (development only)',
    );
  });

  it('allows relative post-login paths and every go-token-handler secret size', () => {
    for (const auth of [32, 64]) {
      for (const enc of [16, 24, 32]) {
        const argv = ['--is_production', '--session_auth_secret', 'a'.repeat(auth), '--session_enc_secret', 'e'.repeat(enc), '--session_db_key', 'd'.repeat(32), ...OIDC, '--oidc_post_login_redirect_url', '/app'];
        expect(load(argv).config.session.encSecrets[0]?.length).toBe(enc);
      }
    }
  });

  it('refuses secrets shorter than 16 bytes in development too', () => {
    expect(problemsOf(['--session_enc_secret', 'short'])).toEqual(['--session_enc_secret (from flag --session_enc_secret): must be at least 16 bytes, got 5']);
  });
});

describe('secret values never appear in problems or warnings', () => {
  const SECRET = 'Sup3r-S3cret-V4lue';
  it.each([
    ['a short auth secret', ['--session_auth_secret', 'hunter2-hunter2'], {}],
    ['bad base64', ['--session_db_key', `base64:${SECRET}!!`], {}],
    ['bad hex', [], { SESSION_ENC_SECRET: `hex:${SECRET}` }],
    ['short in production', ['--is_production', '--session_enc_secret', 'E'.repeat(32), '--session_db_key', 'D'.repeat(32)], { SESSION_AUTH_SECRET: `${SECRET}-20b` }],
    ['a bad database URL', ['--db_url', `mysql://user:${SECRET}@db/x`], {}],
    ['a bad redis URL', [], { REDIS_URL: `memcached://:${SECRET}@cache` }],
  ] as [string, string[], Record<string, string>][])('%s', (_name, argv, env) => {
    const problems = problemsOf(argv, { env });
    expect(problems.length).toBeGreaterThan(0);
    const text = problems.join('\n');
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain('hunter2');
  });

  it('in warnings about secrets on the command line', () => {
    const { warnings } = load(['--session_auth_secret', `${SECRET}-long-enough`, ...OIDC.slice(0, 4), '--oidc_client_secret', SECRET]);
    expect(warnings).toContain('--session_auth_secret was given on the command line, where other local users can read it (ps); prefer SESSION_AUTH_SECRET or token_handler.env');
    expect(warnings.join('\n')).not.toContain(SECRET);
  });

  it('in client secret problems', () => {
    const dir = writeFiles(tempDir(), {
      'secret.txt': `${SECRET}\n`,
      'c.yaml': `clients:\n  - id: a\n    issuer: https://idp.example.com\n    clientId: a\n    clientSecret: ${SECRET}\n    registered: true\n  - id: b\n    issuer: https://idp.example.com\n    clientId: b\n    clientSecretFile: secret.txt\n    clientSecret: ${SECRET}\n`,
    });
    const problems = problemsOf(['--config', 'c.yaml'], { cwd: dir, env: { SOME: SECRET } });
    expect(problems).toHaveLength(2);
    expect(problems.join('\n')).not.toContain(SECRET);
  });
});
