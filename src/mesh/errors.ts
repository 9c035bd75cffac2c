/** Anything the mesh layer refuses or fails at: bad options, an oversized own announcement, start-up errors. */
export class MeshError extends Error {
  override readonly name = 'MeshError';
}
