/**
 * Reads one line from a terminal without echoing it (for passwords). Raw mode lets us see each key
 * and print nothing; Ctrl-C and Ctrl-D end the prompt.
 */
export function readHidden(question: string, input: NodeJS.ReadStream = process.stdin, output: NodeJS.WriteStream = process.stderr): Promise<string> {
  return new Promise((resolve, reject) => {
    // raw mode before the question: typing that follows the question at once is never echoed
    input.setRawMode(true);
    output.write(question);
    let line = '';
    const done = (err?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.off('data', onData);
      output.write('\n');
      if (err) reject(err);
      else resolve(line);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new Error('cancelled'));
        if (ch === '\u0004') return line === '' ? done(new Error('cancelled')) : done();
        if (ch === '\u007f' || ch === '\b') line = line.slice(0, -1);
        else if (ch >= ' ') line += ch;
      }
    };
    input.resume();
    input.on('data', onData);
  });
}

/** All of a non-terminal stdin as text. */
export async function readAll(input: NodeJS.ReadableStream = process.stdin): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks).toString('utf8');
}
