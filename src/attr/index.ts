/** The VM-level device API (KVM device ioctls) over vitsd's vgic-v3 LPI part and ITSes. */
export * from './types.js';
export { VirtualGic, MIN_VCPUS, MAX_VCPUS, type VirtualGicOptions } from './virtual-gic.js';
export { VGIC_ADDR_UNDEF, IPA_LIMIT } from './address.js';
