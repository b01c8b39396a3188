# frozen_string_literal: true

require_relative "version"
require_relative "directives"

module Kino
  # The sample config file `kino --init` writes: every directive with its
  # default and why you would change it, then notes for Rails. Every line
  # is a comment, so the untouched file changes nothing.
  module SampleConfig
    HEADER = <<~TEXT
      kino.rb -- Kino #{VERSION} configuration, written by `kino --init`.

      This file is Ruby. Every line is commented out, so as written it changes
      nothing: Kino runs with its defaults. Uncomment a directive to change it.
      Precedence: command-line flags > this file > defaults. `kino` reads
      ./kino.rb, else ./config/kino.rb, or the file given with -C; `man kino`
      documents each directive. A String of digits is accepted where a number
      is expected, so `port ENV.fetch("PORT", 9292)` works as it does with Puma.
    TEXT

    RAILS = <<~TEXT
      ## Rails

      A Rails app is not Ractor-shareable. On several cores serve it in
      :cluster mode (Puma's workers x threads: one process per worker); on one
      core, or to keep one process, :threaded. With `bin/rails server -u kino`,
      or `bundle exec kino` next to config.ru, a production setup looks like:

        environment "production"
        mode :cluster
        workers 2        # processes: about one per core
        threads 5        # RAILS_MAX_THREADS
        before_fork { ActiveRecord::Base.connection_pool.disconnect! }

      - threads: about the size of the database pool (config/database.yml
        `pool:`, usually RAILS_MAX_THREADS); a thread without a connection
        waits for one. In :cluster mode each process has its own pool; in
        :threaded mode the workers share one, so it must be >= workers x threads.
      - environment "production" sets RACK_ENV (when unset) before the app
        loads; Rails reads it when RAILS_ENV is unset.
      - :cluster loads config.ru once in the master and forks the workers
        (preload true: Puma's preload_app!); the before_fork line closes the
        master's database connections so that no worker shares them.
        :threaded never forks. Keep
        `config.eager_load = true` in production so all code is loaded at
        boot and nothing is autoloaded while threads serve requests.
    TEXT

    # The whole sample, every line starting with "#".
    def self.text
      sections = [comment(HEADER)]
      groups.each do |group, names|
        sections << comment("## #{group}\n")
        names.each { |name| sections << directive(name) }
      end
      sections << comment(RAILS)
      sections.join("#\n") # "#" between sections too: every line is a comment
    end

    # Directive names by sample section, in Directives::GROUPS order; names
    # without a known group come last, under "Other".
    def self.groups
      grouped = Directives.names.group_by { |name| Directives.doc(name).group }
      order = Directives::GROUPS + (grouped.keys - Directives::GROUPS)
      order.filter_map { |group| [group, grouped[group]] if grouped[group] }
    end

    # One directive's block: summary, default, why, then its example line(s).
    def self.directive(name)
      doc = Directives.doc(name)
      about = "#{name}: #{doc.summary}.\nDefault: #{Directives.default_text(name)}.\n"
      about += "Why change it: #{doc.why}\n" unless doc.why.empty?
      comment(wrap(about) + "\n" + doc.example + "\n")
    end

    # +text+ with "# " before each line ("#" alone on blank ones).
    def self.comment(text)
      text.lines.map { |line| line.strip.empty? ? "#\n" : "# #{line}" }.join
    end

    # Lines of +text+ wrapped at +width+ columns, continuation lines indented.
    def self.wrap(text, width = 76)
      text.lines.map do |line|
        words = line.split
        rows = [+""]
        words.each do |word|
          rows << +"  " if rows.last.size + word.size + 1 > width && !rows.last.strip.empty?
          rows.last << (rows.last.strip.empty? ? word : " #{word}")
        end
        rows.join("\n") + "\n"
      end.join
    end

    private_class_method :groups, :directive, :comment, :wrap
  end
end
