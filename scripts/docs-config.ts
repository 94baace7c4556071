import { readFileSync, writeFileSync } from 'node:fs';
import { withConfigurationTables } from './config-table.js';

const file = new URL('../README.md', import.meta.url);
writeFileSync(file, withConfigurationTables(readFileSync(file, 'utf8')));
