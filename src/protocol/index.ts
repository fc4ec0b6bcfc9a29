/** The vitsd wire protocol, version 1: constants, header, payload codecs, request table. */
export * from './constants.js';
export * from './codec.js';
export * from './header.js';
export * from './hello.js';
export * from './memory.js';
export * from './device.js';
export * from './msi.js';
export * from './vcpu.js';
export * from './stats.js';
export * from './requests.js';
export * from './message.js';
