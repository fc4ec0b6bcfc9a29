/** `vitsd --print-capabilities`: what this backend offers, in the vhost-user backend habit. */
import {
  FEATURE_CAPABILITY_NAMES,
  Feature,
  MAX_ITS,
  MAX_MEM_REGIONS,
  MAX_MSI_BATCH,
  MAX_VCPUS,
  PROTOCOL_VERSION,
  SUPPORTED_FEATURES,
  type FeatureName,
} from '../protocol/constants.js';

export interface Capabilities {
  type: 'gicv3-its';
  protocol_version: number;
  features: string[];
  /** The same features as the HELLO bit mask. */
  features_mask: number;
  max_vcpus: number;
  max_its: number;
  max_mem_regions: number;
  max_msi_batch: number;
}

export function capabilities(): Capabilities {
  const features = (Object.keys(Feature) as FeatureName[])
    .filter((name) => (SUPPORTED_FEATURES & Feature[name]) !== 0)
    .map((name) => FEATURE_CAPABILITY_NAMES[name]);
  return {
    type: 'gicv3-its',
    protocol_version: PROTOCOL_VERSION,
    features,
    features_mask: SUPPORTED_FEATURES,
    max_vcpus: MAX_VCPUS,
    max_its: MAX_ITS,
    max_mem_regions: MAX_MEM_REGIONS,
    max_msi_batch: MAX_MSI_BATCH,
  };
}
