import { z } from 'zod';

/** Strips defaults, optionals, refinements and transforms down to the schema that holds the shape. */
export function unwrap(t: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (t instanceof z.ZodDefault) t = t._def.innerType as z.ZodTypeAny;
    else if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap() as z.ZodTypeAny;
    else if (t instanceof z.ZodEffects) t = t.innerType() as z.ZodTypeAny;
    else if (t instanceof z.ZodPipeline) t = t._def.out as z.ZodTypeAny;
    else return t;
  }
}

/** True when the key may be left out (it has a default or is optional). */
export function isOptional(t: z.ZodTypeAny): boolean {
  return t.isOptional() || t instanceof z.ZodDefault;
}

/** The object schema reached by following `path` (array indexes step into the element), if any. */
export function objectAt(schema: z.ZodTypeAny, path: Array<string | number>): z.ZodObject<z.ZodRawShape> | undefined {
  let t = unwrap(schema);
  for (const key of path) {
    if (t instanceof z.ZodArray && typeof key === 'number') t = unwrap(t.element as z.ZodTypeAny);
    else if (t instanceof z.ZodObject && typeof key === 'string' && key in t.shape) t = unwrap(t.shape[key] as z.ZodTypeAny);
    else return undefined;
  }
  return t instanceof z.ZodObject ? (t as z.ZodObject<z.ZodRawShape>) : undefined;
}
