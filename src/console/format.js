// Small display helpers shared by the pages.
export const bytes = (n) => {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
};

export const time = (ms) => (ms ? new Date(ms).toLocaleString() : '—');

export const num = (n) => Math.round(n).toLocaleString('en');
