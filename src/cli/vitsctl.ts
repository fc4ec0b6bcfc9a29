#!/usr/bin/env node
/** `vitsctl`: the VMM-side tool (stats, save, restore, migrate, inspect, demo). See `vitsctl --help`. */
import { hideBin } from 'yargs/helpers';
import { vitsctlMain } from './vitsctl/main.js';

const code = await vitsctlMain(hideBin(process.argv));
// Let stdout drain before exiting (a pipe may be slower than we are).
process.exitCode = code;
