package sg.peers;

import java.nio.ByteBuffer;

/** The five numbers of one scope (a channel, or "channel/campaign") over
 *  one window; a Flink POJO and, through bytes()/of(), a Streams value. */
public class Counts {
    public String scope;
    public long time; // event time (Flink's timestamp assigner); not serialized
    public long impressions, clicks, conversions, spend, revenue;

    public Counts() {
    }

    public Counts add(Counts o) {
        impressions += o.impressions;
        clicks += o.clicks;
        conversions += o.conversions;
        spend += o.spend;
        revenue += o.revenue;
        return this;
    }

    /** The output row: scope, window start (ms), the five numbers. */
    public String row(String scope, long windowStart) {
        return scope + " " + windowStart + " " + impressions + " " + clicks + " "
                + conversions + " " + spend + " " + revenue;
    }

    public byte[] bytes() {
        return ByteBuffer.allocate(40).putLong(impressions).putLong(clicks)
                .putLong(conversions).putLong(spend).putLong(revenue).array();
    }

    public static Counts of(byte[] b) {
        ByteBuffer bb = ByteBuffer.wrap(b);
        Counts c = new Counts();
        c.impressions = bb.getLong();
        c.clicks = bb.getLong();
        c.conversions = bb.getLong();
        c.spend = bb.getLong();
        c.revenue = bb.getLong();
        return c;
    }
}
