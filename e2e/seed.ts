/** Makes the suite's accounts in one process: `node --import tsx e2e/seed.ts <password> <admin email> <user email>…`. */
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';

const [password, admin, ...users] = process.argv.slice(2);
const app = await buildApp(loadConfig(process.env), { worker: false });
try {
  await app.services.identity.createUser({ email: admin!, password: password!, role: 'admin' });
  for (const email of users) await app.services.identity.createUser({ email, password: password!, role: 'user' });
} finally {
  await app.close();
}
