// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.node/', 'artifacts/', 'coverage/', 'bench/.tmp/', 'bench/results/'] },
  {
    files: ['bin/**/*.js'],
    languageOptions: { globals: { URL: 'readonly', process: 'readonly' } },
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': ['error', { allow: ['error', 'warn'] }],
    },
  },
  {
    files: ['test/**', 'bench/**', 'src/demo/**'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['src/demo/page/**/*.js'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', fetch: 'readonly', axios: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
);
