const rec = () => globalThis.__k6rec;

class Metric {
  constructor(name) {
    this.name = name;
  }

  add(value) {
    (rec().metrics[this.name] ||= []).push(value);
  }
}

export class Counter extends Metric {}
export class Rate extends Metric {}
export class Trend extends Metric {}
export class Gauge extends Metric {}
