import { mount } from 'svelte';
import './app.css';
import App from './App.svelte';
import { startRouter } from './lib/router.svelte.ts';
import { resume } from './lib/session.svelte.ts';

startRouter();
void resume();
mount(App, { target: document.getElementById('app')! });
