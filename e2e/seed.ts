/** Makes the suite's accounts in one process: `node --import tsx e2e/seed.ts <password> <admin email> <user email or admin:email>…`. */
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';

const [password, admin, ...users] = process.argv.slice(2);
const app = await buildApp(loadConfig(process.env), { worker: false });
try {
  await app.services.identity.createUser({ email: admin!, password: password!, role: 'admin' });
  // `admin:<email>` makes another administrator
  for (const entry of users) {
    const role = entry.startsWith('admin:') ? 'admin' : 'user';
    await app.services.identity.createUser({ email: entry.replace(/^admin:/, ''), password: password!, role });
  }
} finally {
  await app.close();
}
