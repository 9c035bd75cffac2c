// The mesh module: anchor discovery over libp2p with signed announcements.
export {
  ANNOUNCEMENT_DOMAIN,
  type Announcement,
  AnnouncementTable,
  decodeSignedAnnouncement,
  encodeAnnouncement,
  encodeSignedAnnouncement,
  MAX_ANNOUNCEMENT_BYTES,
  type OfferResult,
  type SelfDescription,
  type SignedAnnouncement,
  signAnnouncement,
  type VerifyResult,
  verifyAnnouncement,
} from './announcement.ts';
export { MeshError } from './errors.ts';
export { ANNOUNCE_PROTOCOL, ANNOUNCE_PUSH_PROTOCOL, ANNOUNCE_TOPIC, Mesh, type MeshOptions } from './mesh.ts';
