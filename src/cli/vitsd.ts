#!/usr/bin/env node
/** `vitsd`: the daemon. See `vitsd --help`. */
import { hideBin } from 'yargs/helpers';
import { vitsdMain } from './vitsd-main.js';

await vitsdMain(hideBin(process.argv), {
  createVm: async () => (await import('../daemon/vm-factory.js')).createVmDevices(),
});
